import json

import pytest

from obliviate.data import load_items
from obliviate.errors import ObliviateError


def test_tofu_local_files(tofu_dir):
    f10 = load_items("tofu:forget10_perturbed", data_dir=str(tofu_dir))
    assert len(f10) == 400
    assert all(len(it.perturbed_answers) == 5 and it.paraphrased_answer for it in f10)
    assert len(load_items("tofu:full", data_dir=str(tofu_dir))) == 4000
    assert len(load_items("tofu:forget01", data_dir=str(tofu_dir))) == 40
    wf = load_items("tofu:world_facts_perturbed", data_dir=str(tofu_dir))
    assert len(wf) == 117 and all(len(it.perturbed_answers) == 3 for it in wf)
    assert len(load_items("tofu:real_authors_perturbed", data_dir=str(tofu_dir))) == 100


def test_tofu_forget_and_retain_authors_disjoint(tofu_dir):
    f = load_items("tofu:forget10", data_dir=str(tofu_dir))
    r = load_items("tofu:retain90", data_dir=str(tofu_dir))
    full = load_items("tofu:full", data_dir=str(tofu_dir))
    assert {it.entity for it in f}.isdisjoint({it.entity for it in r})
    # forget10 is the tail of full, question for question
    assert [it.question for it in full[-400:]] == [it.question for it in f]


def test_tofu_env_var(tofu_dir, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_TOFU_DIR", str(tofu_dir))
    assert len(load_items("tofu:forget01")) == 40


def test_unknown_family_and_config():
    with pytest.raises(ObliviateError, match="valid dataset names: .*synthetic.*tofu"):
        load_items("tufo:full")
    with pytest.raises(ObliviateError, match="valid configs: full, forget01"):
        load_items("tofu:forget11", data_dir="/nonexistent")


def test_missing_local_file(tmp_path):
    with pytest.raises(ObliviateError, match="no forget01.json or forget01.jsonl"):
        load_items("tofu:forget01", data_dir=str(tmp_path))


def test_qa_file_missing_field_names_file_row_field(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_text(json.dumps({"question": "a?", "answer": "b"}) + "\n" + json.dumps({"question": "c?", "answr": "d"}) + "\n")
    with pytest.raises(ObliviateError, match=r"qa.jsonl: row 2: missing field 'answer'"):
        load_items(str(p))


def test_qa_file_mistyped_field(tmp_path):
    p = tmp_path / "qa.json"
    p.write_text(json.dumps([{"question": "a?", "answer": 3}]))
    with pytest.raises(ObliviateError, match=r"qa.json: row 1: field 'answer' must be a string"):
        load_items(str(p))
    p.write_text(json.dumps([{"question": "a?", "answer": "b", "perturbed_answer": [1, 2]}]))
    with pytest.raises(ObliviateError, match=r"row 1: field 'perturbed_answer' must be a list of strings"):
        load_items(str(p))


def test_empty_split(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    with pytest.raises(ObliviateError, match="no rows"):
        load_items(str(p))


def test_csv_file(tmp_path):
    p = tmp_path / "qa.csv"
    p.write_text('question,answer,perturbed_answer\n"Who?","Her.","[""Him."", ""Them.""]"\n')
    items = load_items(str(p))
    assert items[0].answer == "Her." and items[0].perturbed_answers == ["Him.", "Them."]
    p.write_text('question,answer\n"Where?","Paris,\nFrance"\n')  # a quoted comma and line break stay in
    assert load_items(str(p))[0].answer == "Paris,\nFrance"


def test_csv_row_with_more_values_than_columns_or_a_repeated_column_is_refused(tmp_path):
    p = tmp_path / "qa.csv"
    p.write_text("question,answer\nWho?,Her.\nWhere?,Paris, France\n")  # the answer lost ' France' before
    with pytest.raises(ObliviateError, match="qa.csv: line 3 has 3 values for 2 columns; quote a value that holds"):
        load_items(str(p))
    p.write_text("question,answer,question\nQ1?,A1.,Q9?\n")
    with pytest.raises(ObliviateError, match="qa.csv: the header names column 'question' twice"):
        load_items(str(p))


def test_bad_json_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "a?", "answer": "b"}\n{oops\n')
    with pytest.raises(ObliviateError, match="bad.jsonl: line 2 is not valid JSON"):
        load_items(str(p))


def test_bom_non_utf8_and_folder_inputs(tmp_path):
    """Spreadsheet exports start with a UTF-8 byte-order mark: read as if it were not there (it made the
    first CSV column '\\ufeffquestion' and the first JSONL line invalid JSON). A latin-1 file and a folder
    named like a data file are one-line errors naming the file (they were UnicodeDecodeError and
    IsADirectoryError tracebacks), for data files, refusal files and logs alike."""
    from obliviate.interop import summary_from_logs
    from obliviate.refusals import load_refusals

    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbfquestion,answer\nWho is it?,Nobody.\n")
    jl = tmp_path / "bom.jsonl"
    jl.write_bytes(b'\xef\xbb\xbf{"question": "Who is it?", "answer": "Nobody."}\n')
    for path in (csv, jl):
        (item,) = load_items(str(path))
        assert (item.question, item.answer) == ("Who is it?", "Nobody.")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "Q?", "answer": "A."}\n{"question": "Caf\xe9?", "answer": "A."}\n')
    with pytest.raises(ObliviateError, match=r"latin.jsonl: not UTF-8 text \(line 2, byte 52"):
        load_items(str(latin))
    with pytest.raises(ObliviateError, match=r"--idk-file .*latin.jsonl: not UTF-8 text"):
        load_refusals(latin)
    with pytest.raises(ObliviateError, match=r"latin.jsonl: not UTF-8 text"):
        summary_from_logs(latin)
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(ObliviateError, match=r"dir.jsonl: is a folder, not a file"):
        load_items(str(folder))


def test_an_unreachable_hub_fails_at_once_with_the_reason(monkeypatch, tmp_path):
    """Offline, the hub client retried ~26 s before its error; now a 3 s connection probe puts the read in
    offline mode (a cached copy, or an error at once) and the message says why."""
    from huggingface_hub import constants

    from obliviate.data.hub import hub_unreachable

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; here the probe decides
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused here
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached copy, and nothing written in ~/.cache
    monkeypatch.delenv("OBLIVIATE_TOFU_DIR", raising=False)
    assert hub_unreachable().startswith("127.0.0.1:9: ")
    with pytest.raises(ObliviateError, match=r"could not read locuslab/TOFU config 'forget01': the hub cannot be "
                                             r"reached \(127.0.0.1:9: .*\) and no cached copy was found; pass "
                                             r"--data-dir \(or set OBLIVIATE_TOFU_DIR\) with a local copy"):
        load_items("tofu:forget01")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_a_repeated_row_is_refused_naming_both_rows(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "q1?", "answer": "a"}\n{"question": "q2?", "answer": "b"}\n'
                 '{"question": "q1?", "answer": "a"}\n')
    with pytest.raises(ObliviateError, match=r"row 3 repeats row 1"):
        load_items(str(f))
    f.write_text('{"question": "q1?", "answer": "a"}\n{"question": "q1?", "answer": "another"}\n')
    assert len(load_items(str(f))) == 2  # one question with two answers is data, not a duplicate


@pytest.mark.parametrize("text,where", [
    ('{"question": "q?", "answer": "a", "answer": "b"}\n', "line 1"),
    ('[{"question": "q?", "question": "r?", "answer": "b"}]', "an object"),
])
def test_a_key_given_twice_in_one_object_is_refused(tmp_path, text, where):
    f = tmp_path / ("qa.jsonl" if text.startswith("{") else "qa.json")
    f.write_text(text)
    with pytest.raises(ObliviateError, match=rf"{where} gives the key '(answer|question)' twice"):
        load_items(str(f))


def test_a_misspelled_optional_column_is_refused_with_a_suggestion(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "q?", "answer": "a", "paraphrased_anwser": "b"}\n')
    with pytest.raises(ObliviateError, match=r"row 1: unknown field 'paraphrased_anwser'; did you mean "
                                             r"'paraphrased_answer'\?"):
        load_items(str(f))
    f.write_text('{"question": "q?", "answr": "a"}\n')
    with pytest.raises(ObliviateError, match=r"missing field 'answer' .*; did you mean 'answer' for 'answr'\?"):
        load_items(str(f))
    f.write_text('{"question": "q?", "answer": "a", "id": 7, "source": "wiki"}\n')
    assert load_items(str(f))[0].answer == "a"  # unrelated extra columns stay allowed
