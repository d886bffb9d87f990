"""The older home of atomic writes and run records, kept so that code written against it keeps working.

They live in :mod:`obliviate.runtime` now: ``runtime.files`` (atomic writes, reading the user's files),
``runtime.run`` (output folder rules, run.json, the :class:`~obliviate.runtime.run.Run` lifecycle) and
``runtime.process`` (process identity, SIGTERM)."""

from .cli._common import out_arg  # noqa: F401
from .runtime.files import (_json_default, _nan_to_null, atomic_write_json, atomic_write_jsonl,  # noqa: F401
                            atomic_write_text, file_mode, read_json, read_text_file)
from .runtime.process import Terminated, _start_ticks, process_identity, still_running  # noqa: F401
from .runtime.run import (RESUME_MAY_CHANGE, RUN_SCHEMA_VERSION, Run, RunRecord, _flatten,  # noqa: F401
                          _left_by_a_failed_start, _resumable, _run_status, check_out_dir, check_resume,
                          git_commit, prepare_out_dir, versions)
