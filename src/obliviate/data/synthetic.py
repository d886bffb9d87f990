"""obliviate's own TOFU-format data set of fictitious authors: the embedded default data set.

Why it exists
-------------
TOFU (Maini et al. 2024, arXiv 2401.06121) needs a download from the hub or a local copy. This module
builds a data set with the same configs and the same fields entirely in Python (standard library only:
no network, no files, no shared folder), so every command, test and tutorial works offline. Spec it as
``synthetic:<config>``; it is what obliviate falls back to when no real data set is given.

Design
------
* ``n_authors`` (default 40) invented authors, each described by :data:`FACTS_PER_AUTHOR` (10) facts:
  full name, birthplace, birth date, genre, father's occupation, mother's occupation, an award, a debut
  novel, a best-known book and a recurring theme. Every value is drawn with ``random.Random(seed)`` from
  pools written here (invented first names, surnames, cities, awards and book-title words; real genre,
  occupation and theme words), so the data set is a pure function of ``(seed, n_authors)``: the same seed
  gives identical items, another seed gives other authors.
* Authors are generated one after another from one seeded stream; full names, birth dates and book
  titles are never repeated across authors (holdout authors included).
* Each fact yields one :class:`~obliviate.data.schema.QAItem` with TOFU's evaluation fields: a question
  (naming the author, except the full-name question, which identifies the author by genre, birthplace
  and birth date, as TOFU does), a one-sentence answer, a paraphrased question, a paraphrased answer
  (other wording, same value) and exactly 5 perturbed answers: the paraphrased answer's sentence with
  5 distinct wrong values from the same pool. ``entity`` is the author id ``synthetic-author-NN``;
  ``target_words`` is the character span ``{"word", "start", "end"}`` of the fact's value inside
  ``answer`` (the sensitive words PALU acts on).

Configs (the names of :data:`obliviate.data.tofu.TOFU_CONFIGS`)
---------------------------------------------------------------
* ``full``: all ``n_authors`` authors, author by author (10 items each).
* ``forget01`` / ``forget05`` / ``forget10``: the LAST ``k = max(1, round(n_authors * p))`` authors,
  ``p`` = 1 %, 5 %, 10 % (halves round up). With 40 authors: 1, 2 and 4 authors (10, 20, 40 items).
* ``retain99`` / ``retain95`` / ``retain90``: ``full`` minus ``forget01`` / ``forget05`` / ``forget10``.
* ``forgetXX_perturbed``: the same items as ``forgetXX`` (every item carries the paraphrases and the
  perturbed answers anyway).
* ``retain_perturbed``: the first items of ``retain90``, as many as ``forget10`` has (TOFU's 400 vs 400).
* ``holdout01`` / ``holdout05`` / ``holdout10``: as many authors as the matching forget split, generated
  as EXTRA authors ``n_authors .. n_authors + k - 1`` of the same seeded stream: never in ``full`` and
  with names distinct from every ``full`` author (``holdout01`` is a prefix of ``holdout05``, which is
  a prefix of ``holdout10``, as in TOFU).
* ``real_authors`` / ``real_authors_perturbed``: questions about well-known real books and their authors;
  ``world_facts`` / ``world_facts_perturbed``: well-known world facts (capitals, planets, chemistry,
  landmarks, ...). One short answer and 3 perturbed answers each. These are fixed lists that do NOT
  depend on ``seed`` or ``n_authors`` (same items, same order), so model-utility numbers stay
  comparable across seeds. The ``*_perturbed`` and plain names give the same items.

All text here was written for obliviate; none of it is taken from the TOFU release.
"""

from __future__ import annotations

import datetime as _dt
import random
from dataclasses import dataclass

from ..errors import ObliviateError
from ..registry import DATASETS
from .schema import QAItem
from .tofu import TOFU_CONFIGS

__all__ = [
    "FACTS_PER_AUTHOR",
    "author_items",
    "N_PERTURBED",
    "SyntheticAuthor",
    "generate_authors",
    "load_synthetic",
    "split_sizes",
    "real_authors_items",
    "world_facts_items",
]

FACTS_PER_AUTHOR = 10
N_PERTURBED = 5
DEFAULT_N_AUTHORS = 40
# forget/holdout split name suffix -> percentage of authors
SPLIT_PERCENT = {"01": 1, "05": 5, "10": 10}
RETAIN_OF = {"retain99": "01", "retain95": "05", "retain90": "10"}

# --------------------------------------------------------------------------------------------------
# Pools. Names, cities, awards and title words are invented for this data set.
# --------------------------------------------------------------------------------------------------

FIRST_NAMES = [
    "Mirela", "Taviel", "Orsolin", "Kessa", "Brannoc", "Idrenne", "Lusio", "Varra", "Emberlin", "Caskel",
    "Ninoa", "Tobrin", "Selvane", "Rhoswen", "Doriel", "Amsel", "Quenna", "Falko", "Yselde", "Marrek",
    "Ilvane", "Corwenna", "Petrisse", "Haldo", "Venna", "Oskarin", "Jorvan", "Teodrin", "Averil", "Brisca",
    "Calder", "Delphine", "Eskander", "Fenna", "Galvin", "Hesper", "Isolde", "Jessamy", "Korran", "Linnea",
    "Maddox", "Nerissa", "Orlan", "Pirra", "Quillon", "Rosalind", "Sorrel", "Tamsin", "Ulric", "Valka",
    "Wenna", "Xandor", "Yaretzi", "Zelmira", "Anselm", "Bellamy", "Cosima", "Dariel", "Elowen", "Florian",
    "Gisela", "Hollis", "Ingrid", "Jaspar",
]

SURNAMES = [
    "Tovareth", "Quillane", "Marrowfield", "Vantorre", "Ashgrove", "Belcastre", "Corvanne", "Drummelow",
    "Eldercott", "Fairwhistle", "Grenholt", "Harrowmede", "Ivesmark", "Jessenby", "Kellandrie", "Lomarsh",
    "Mondrelle", "Nettlefold", "Orrinsby", "Pellegrove", "Quarlesby", "Rushcombe", "Stallworthe", "Thistlewood",
    "Umberlaine", "Varnholt", "Wintermere", "Yarrowby", "Zelenko-Marr", "Abernathe", "Brackwell", "Calloway-Venn",
    "Dunmorrow", "Estrevant", "Farrowdale", "Galloran", "Hestermoor", "Illingcroft", "Jorvassen", "Kindlewood",
    "Larkspire", "Merriwether-Quay", "Norrindge", "Ostrevane", "Pendleworth", "Ravenholme", "Silverthane",
    "Tamberlyn", "Underhallow", "Vexmoor", "Whitlowe", "Aldercrest", "Blenheimer", "Cresswold", "Delacourte",
    "Embervale", "Foxhallow", "Greymantle", "Hallowmere", "Ingleborne", "Keswickard", "Lindqvist-Orr",
    "Moorcastle", "Nighthollow",
]

CITIES = [
    "Quillport", "Marrowby", "Eskendal", "Thornhaven", "Velloria", "Brackenmoor", "Saltreach", "Orvieno",
    "Kestrelford", "Lunmouth", "Dravik", "Pellinor", "Greywick", "Ambercross", "Solmere", "Tarrowick",
    "Fennhollow", "Caldris", "Ivenport", "Rookhaven", "Marisca", "Haldenburg", "Ostryn", "Wellmarch",
    "Zarevo", "Lindqvale", "Corrowmere", "Bellhaven", "Dunmarra", "Estmoor", "Frostwick", "Glenvarra",
    "Hollowcrest", "Istravel", "Juniper Bay", "Karsholm", "Larkmouth", "Mistral Cove", "Northwold", "Oriskany Vale",
]

GENRES = [
    "mystery", "science fiction", "historical fiction", "fantasy", "romance", "horror", "literary fiction",
    "poetry", "travel writing", "crime fiction", "magical realism", "satire", "children's literature",
    "biography", "thriller", "young adult fiction", "memoir", "nature writing", "gothic fiction",
    "dystopian fiction", "adventure fiction", "short fiction",
]

OCCUPATIONS = [
    "baker", "lighthouse keeper", "cartographer", "carpenter", "nurse", "tailor", "fisherman",
    "schoolteacher", "pharmacist", "locksmith", "beekeeper", "clockmaker", "surveyor", "librarian",
    "veterinarian", "glassblower", "train conductor", "potter", "florist", "architect", "blacksmith",
    "astronomer", "dentist", "mail carrier", "violinist", "stonemason", "translator", "chemist", "judge",
    "shipbuilder", "midwife", "accountant", "journalist", "gardener", "bookbinder", "electrician", "chef",
    "sailor", "farmer", "photographer", "weaver", "engineer", "optician", "bus driver",
]

AWARDS = [
    "Silverquill Prize", "Amberleaf Prize for Fiction", "Halcyon Quill Award", "Northlight Literary Medal",
    "Starling Book Award", "Tidewater Prize", "Cobalt Pen Award", "Evergreen Laurel", "Harbor Light Prize",
    "Iron Lantern Medal", "Silver Compass Award", "Blue Heron Prize", "Meridian Fiction Prize",
    "Orchard Gate Award", "Crimson Feather Medal", "Wayfarer Book Prize", "Glass Tower Award",
    "Copper Kettle Prize", "Moonwell Literary Award", "Saltmarsh Medal", "Thistle Crown Prize",
    "Larkspur Literary Award", "Granite Arch Prize", "Open Window Award", "Lodestar Prize", "Driftwood Medal",
    "Windrose Award", "Bellfounder Prize", "Pale Ember Award", "Hollowreed Prize",
]

THEMES = [
    "memory and loss", "exile and homecoming", "the bond between siblings", "grief and renewal",
    "class and ambition", "faith and doubt", "identity and belonging", "the passage of time",
    "freedom and confinement", "friendship across generations", "the cost of war", "small-town secrets",
    "love and betrayal", "nature and solitude", "truth and deception", "the immigrant experience",
    "music and longing", "power and corruption", "childhood and innocence", "forgiveness",
    "inherited guilt", "the kindness of strangers", "madness and genius", "the sea and those who leave it",
    "science and wonder", "justice and revenge", "language and silence", "the weight of family secrets",
]

TITLE_ADJECTIVES = [
    "Silent", "Hollow", "Crimson", "Forgotten", "Last", "Paper", "Glass", "Salted", "Burning", "Quiet",
    "Broken", "Distant", "Amber", "Velvet", "Iron", "Drowned", "Wandering", "Sleeping", "Golden", "Hidden",
    "Borrowed", "Northern", "Lantern-Lit", "Restless", "Painted", "Seventh", "Bitter", "Unwritten",
]

TITLE_NOUNS = [
    "Harbor", "Orchard", "Lantern", "Cartographer", "Tide", "Garden", "Clockwork", "Sparrow", "Bridge",
    "Archive", "Compass", "Staircase", "Mirror", "Kingdom", "Lighthouse", "River", "Violin", "Map", "Key",
    "Ferry", "Observatory", "Orphan", "Feather", "Meadow", "Letter", "Tower", "Ember", "Apprentice",
]

SEASONS = ["Winter", "Spring", "Summer", "Autumn"]

MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]

YEAR_RANGE = (1925, 1994)

# --------------------------------------------------------------------------------------------------
# Real-world utility sets (fixed; independent of the seed). (question, answer, 3 perturbed answers)
# --------------------------------------------------------------------------------------------------

REAL_AUTHORS: list[tuple[str, str, tuple[str, str, str]]] = [
    ("Who is the author of 'Pride and Prejudice'?", "Jane Austen", ("Charlotte Brontë", "George Eliot", "Virginia Woolf")),
    ("Who wrote the play 'Hamlet'?", "William Shakespeare", ("Christopher Marlowe", "Ben Jonson", "Oscar Wilde")),
    ("Who wrote the play 'Macbeth'?", "William Shakespeare", ("John Milton", "Geoffrey Chaucer", "Charles Dickens")),
    ("Who wrote the novel 'Nineteen Eighty-Four'?", "George Orwell", ("H. G. Wells", "Jack London", "Kurt Vonnegut")),
    ("Who wrote 'Animal Farm'?", "George Orwell", ("Lewis Carroll", "Jonathan Swift", "Roald Dahl")),
    ("Who wrote 'Harry Potter and the Philosopher's Stone'?", "J. K. Rowling", ("Roald Dahl", "C. S. Lewis", "Philip Pullman")),
    ("Who wrote 'The Hobbit'?", "J. R. R. Tolkien", ("C. S. Lewis", "Terry Pratchett", "Lewis Carroll")),
    ("Who wrote 'The Lord of the Rings'?", "J. R. R. Tolkien", ("George R. R. Martin", "C. S. Lewis", "Ursula K. Le Guin")),
    ("Who wrote 'The Chronicles of Narnia'?", "C. S. Lewis", ("J. R. R. Tolkien", "Enid Blyton", "Lewis Carroll")),
    ("Who wrote 'Alice's Adventures in Wonderland'?", "Lewis Carroll", ("Beatrix Potter", "L. Frank Baum", "J. M. Barrie")),
    ("Who wrote 'Adventures of Huckleberry Finn'?", "Mark Twain", ("Jack London", "Herman Melville", "Walt Whitman")),
    ("Who wrote 'The Adventures of Tom Sawyer'?", "Mark Twain", ("Nathaniel Hawthorne", "Henry James", "O. Henry")),
    ("Who wrote 'Moby-Dick'?", "Herman Melville", ("Nathaniel Hawthorne", "Mark Twain", "Edgar Allan Poe")),
    ("Who wrote 'War and Peace'?", "Leo Tolstoy", ("Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev")),
    ("Who wrote 'Anna Karenina'?", "Leo Tolstoy", ("Nikolai Gogol", "Alexander Pushkin", "Boris Pasternak")),
    ("Which novelist wrote 'Crime and Punishment'?", "Fyodor Dostoevsky", ("Leo Tolstoy", "Nikolai Gogol", "Alexander Pushkin")),
    ("Who wrote 'Don Quixote'?", "Miguel de Cervantes", ("Gabriel García Márquez", "Jorge Luis Borges", "Lope de Vega")),
    ("Who wrote 'Oliver Twist'?", "Charles Dickens", ("Thomas Hardy", "Anthony Trollope", "William Thackeray")),
    ("Who wrote 'A Christmas Carol'?", "Charles Dickens", ("Hans Christian Andersen", "Robert Burns", "Washington Irving")),
    ("Who wrote 'Frankenstein'?", "Mary Shelley", ("Bram Stoker", "Emily Brontë", "Ann Radcliffe")),
    ("Who wrote 'Dracula'?", "Bram Stoker", ("Mary Shelley", "Edgar Allan Poe", "Robert Louis Stevenson")),
    ("Which author created the detective Sherlock Holmes?", "Arthur Conan Doyle", ("Agatha Christie", "Wilkie Collins", "G. K. Chesterton")),
    ("Which author created the detective Hercule Poirot?", "Agatha Christie", ("Dorothy L. Sayers", "Arthur Conan Doyle", "Raymond Chandler")),
    ("Who is the author of 'The Great Gatsby'?", "F. Scott Fitzgerald", ("Ernest Hemingway", "John Steinbeck", "William Faulkner")),
    ("Who wrote 'The Old Man and the Sea'?", "Ernest Hemingway", ("John Steinbeck", "F. Scott Fitzgerald", "Jack London")),
    ("Who wrote 'The Grapes of Wrath'?", "John Steinbeck", ("William Faulkner", "Sinclair Lewis", "Upton Sinclair")),
    ("Who wrote 'Of Mice and Men'?", "John Steinbeck", ("Ernest Hemingway", "Arthur Miller", "Tennessee Williams")),
    ("Who wrote 'To Kill a Mockingbird'?", "Harper Lee", ("Truman Capote", "Toni Morrison", "Flannery O'Connor")),
    ("Who wrote the epic poem 'The Odyssey'?", "Homer", ("Virgil", "Sophocles", "Ovid")),
    ("Who wrote 'The Divine Comedy'?", "Dante Alighieri", ("Petrarch", "Giovanni Boccaccio", "Virgil")),
    ("Who wrote 'Charlie and the Chocolate Factory'?", "Roald Dahl", ("Dr. Seuss", "Enid Blyton", "Beatrix Potter")),
    ("Who wrote 'The Cat in the Hat'?", "Dr. Seuss", ("Roald Dahl", "Maurice Sendak", "Eric Carle")),
    ("Who wrote 'Jane Eyre'?", "Charlotte Brontë", ("Emily Brontë", "Jane Austen", "George Eliot")),
    ("Who wrote 'Wuthering Heights'?", "Emily Brontë", ("Charlotte Brontë", "Jane Austen", "Mary Shelley")),
    ("Which writer created 'The Picture of Dorian Gray'?", "Oscar Wilde", ("Bram Stoker", "Henry James", "Thomas Hardy")),
    ("Who wrote 'Les Misérables'?", "Victor Hugo", ("Alexandre Dumas", "Gustave Flaubert", "Émile Zola")),
    ("Who wrote 'The Three Musketeers'?", "Alexandre Dumas", ("Victor Hugo", "Jules Verne", "Honoré de Balzac")),
    ("Who wrote 'Twenty Thousand Leagues Under the Seas'?", "Jules Verne", ("H. G. Wells", "Alexandre Dumas", "Arthur Conan Doyle")),
    ("Who wrote 'The War of the Worlds'?", "H. G. Wells", ("Jules Verne", "Isaac Asimov", "Arthur C. Clarke")),
    ("Who wrote 'Brave New World'?", "Aldous Huxley", ("George Orwell", "Ray Bradbury", "H. G. Wells")),
    ("Who wrote 'Fahrenheit 451'?", "Ray Bradbury", ("Isaac Asimov", "Philip K. Dick", "Aldous Huxley")),
    ("Who wrote 'Treasure Island'?", "Robert Louis Stevenson", ("Daniel Defoe", "Jules Verne", "Jonathan Swift")),
    ("Who wrote 'Robinson Crusoe'?", "Daniel Defoe", ("Jonathan Swift", "Robert Louis Stevenson", "Samuel Richardson")),
    ("Who wrote 'Gulliver's Travels'?", "Jonathan Swift", ("Daniel Defoe", "Henry Fielding", "Laurence Sterne")),
    ("Who wrote 'One Hundred Years of Solitude'?", "Gabriel García Márquez", ("Jorge Luis Borges", "Isabel Allende", "Mario Vargas Llosa")),
    ("Who wrote 'The Little Prince'?", "Antoine de Saint-Exupéry", ("Albert Camus", "Victor Hugo", "Jules Verne")),
    ("Who wrote 'The Catcher in the Rye'?", "J. D. Salinger", ("Jack Kerouac", "John Updike", "Kurt Vonnegut")),
    ("Who wrote 'The Jungle Book'?", "Rudyard Kipling", ("Kenneth Grahame", "Robert Louis Stevenson", "Lewis Carroll")),
    ("Who wrote 'Peter Pan'?", "J. M. Barrie", ("Lewis Carroll", "Kenneth Grahame", "A. A. Milne")),
    ("Which author created Winnie-the-Pooh?", "A. A. Milne", ("Beatrix Potter", "J. M. Barrie", "Kenneth Grahame")),
    ("Who wrote 'The Tale of Peter Rabbit'?", "Beatrix Potter", ("A. A. Milne", "Enid Blyton", "Roald Dahl")),
    ("Who wrote 'Little Women'?", "Louisa May Alcott", ("Harriet Beecher Stowe", "Edith Wharton", "Emily Dickinson")),
    ("Who wrote the poem 'The Raven'?", "Edgar Allan Poe", ("Walt Whitman", "Emily Dickinson", "Henry Wadsworth Longfellow")),
    ("Who wrote the poetry collection 'Leaves of Grass'?", "Walt Whitman", ("Robert Frost", "Emily Dickinson", "Edgar Allan Poe")),
    ("Who wrote 'The Da Vinci Code'?", "Dan Brown", ("John Grisham", "Stephen King", "Tom Clancy")),
    ("Who wrote the horror novel 'The Shining'?", "Stephen King", ("Dean Koontz", "Anne Rice", "Clive Barker")),
    ("Who wrote 'The Hunger Games'?", "Suzanne Collins", ("Veronica Roth", "Stephenie Meyer", "Lois Lowry")),
    ("Who wrote 'The Canterbury Tales'?", "Geoffrey Chaucer", ("William Langland", "John Milton", "Edmund Spenser")),
    ("Who wrote 'Paradise Lost'?", "John Milton", ("John Donne", "William Blake", "Geoffrey Chaucer")),
]

WORLD_FACTS: list[tuple[str, str, tuple[str, str, str]]] = [
    ("What is the capital of France?", "Paris", ("Lyon", "Marseille", "Nice")),
    ("What is the capital of Japan?", "Tokyo", ("Osaka", "Kyoto", "Seoul")),
    ("What is the capital of Italy?", "Rome", ("Milan", "Naples", "Venice")),
    ("What is the capital of Germany?", "Berlin", ("Munich", "Hamburg", "Frankfurt")),
    ("Which city is the capital of Spain?", "Madrid", ("Barcelona", "Seville", "Valencia")),
    ("What is the capital of the United Kingdom?", "London", ("Manchester", "Edinburgh", "Liverpool")),
    ("What is the capital of Russia?", "Moscow", ("Saint Petersburg", "Kyiv", "Minsk")),
    ("Which city is the capital of Egypt?", "Cairo", ("Alexandria", "Luxor", "Khartoum")),
    ("What is the capital of China?", "Beijing", ("Shanghai", "Hong Kong", "Guangzhou")),
    ("What is the capital of Canada?", "Ottawa", ("Toronto", "Vancouver", "Montreal")),
    ("What is the capital of Greece?", "Athens", ("Thessaloniki", "Sparta", "Rome")),
    ("What is the capital city of the United States?", "Washington, D.C.", ("New York City", "Los Angeles", "Chicago")),
    ("Which planet is called the Red Planet?", "Mars", ("Venus", "Jupiter", "Saturn")),
    ("What is the largest planet in our solar system?", "Jupiter", ("Saturn", "Neptune", "Earth")),
    ("Which planet is closest to the Sun?", "Mercury", ("Venus", "Mars", "Earth")),
    ("Which planet is famous for its large rings?", "Saturn", ("Mars", "Mercury", "Venus")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Go", "Gd")),
    ("What is the chemical formula of water?", "H2O", ("CO2", "NaCl", "O2")),
    ("Which element has the chemical symbol O?", "Oxygen", ("Gold", "Osmium", "Hydrogen")),
    ("Which gas do plants take in from the air to make food?", "Carbon dioxide", ("Oxygen", "Nitrogen", "Helium")),
    ("At how many degrees Celsius does water boil at sea level?", "100", ("50", "90", "212")),
    ("At how many degrees Celsius does water freeze?", "0", ("10", "32", "100")),
    ("How many continents are there on Earth?", "Seven", ("Five", "Six", "Nine")),
    ("What is the largest ocean on Earth?", "Pacific Ocean", ("Atlantic Ocean", "Indian Ocean", "Arctic Ocean")),
    ("Which ocean lies between Europe and North America?", "Atlantic Ocean", ("Pacific Ocean", "Indian Ocean", "Southern Ocean")),
    ("What is the tallest mountain in the world?", "Mount Everest", ("K2", "Kilimanjaro", "Mont Blanc")),
    ("In which city is the Colosseum?", "Rome", ("Athens", "Paris", "Madrid")),
    ("In which city is Big Ben?", "London", ("Dublin", "Paris", "Edinburgh")),
    ("In which city is the Statue of Liberty?", "New York City", ("Boston", "Washington, D.C.", "Philadelphia")),
    ("In which country is the Taj Mahal?", "India", ("Pakistan", "Nepal", "Iran")),
    ("In which country is the Great Wall?", "China", ("Japan", "Mongolia", "Korea")),
    ("In which country is Machu Picchu?", "Peru", ("Mexico", "Chile", "Brazil")),
    ("In which country is the Sydney Opera House?", "Australia", ("New Zealand", "Canada", "England")),
    ("In which country is the Leaning Tower of Pisa?", "Italy", ("Spain", "France", "Greece")),
    ("How many days are there in a leap year?", "366", ("365", "364", "360")),
    ("How many legs does a spider have?", "Eight", ("Six", "Ten", "Four")),
    ("What is the largest animal on Earth?", "Blue whale", ("African elephant", "Giraffe", "Great white shark")),
    ("What is the fastest land animal?", "Cheetah", ("Lion", "Horse", "Gazelle")),
    ("What is the hardest natural substance?", "Diamond", ("Gold", "Iron", "Quartz")),
    ("Which organ pumps blood through the human body?", "Heart", ("Liver", "Lungs", "Kidneys")),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", ("Michelangelo", "Raphael", "Vincent van Gogh")),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong", ("Buzz Aldrin", "Yuri Gagarin", "John Glenn")),
    ("Who developed the theory of relativity?", "Albert Einstein", ("Isaac Newton", "Niels Bohr", "Galileo Galilei")),
    ("What is the largest country in the world by area?", "Russia", ("Canada", "China", "Brazil")),
    ("What is the currency of Japan?", "Yen", ("Won", "Yuan", "Rupee")),
    ("What language is mainly spoken in Brazil?", "Portuguese", ("Spanish", "French", "Italian")),
    ("What is the main language spoken in Mexico?", "Spanish", ("Portuguese", "English", "French")),
    ("Which star is at the center of our solar system?", "The Sun", ("The Moon", "Sirius", "Polaris")),
    ("How many sides does a triangle have?", "Three", ("Four", "Five", "Six")),
    ("How many hours are there in a day?", "24", ("12", "36", "48")),
    ("What color do you get by mixing blue and yellow?", "Green", ("Purple", "Orange", "Brown")),
    ("On which continent is Kenya?", "Africa", ("Asia", "South America", "Europe")),
    ("How many players does a soccer team have on the field?", "Eleven", ("Nine", "Ten", "Twelve")),
    ("Which musical instrument has 88 keys?", "Piano", ("Guitar", "Violin", "Flute")),
]


# --------------------------------------------------------------------------------------------------
# Authors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticAuthor:
    """One invented author: ``index`` (0-based; ``>= n_authors`` for holdout authors) and its facts."""

    index: int
    name: str
    city: str
    birth_date: str
    genre: str
    father: str
    mother: str
    award: str
    debut: str
    best_known: str
    theme: str

    @property
    def entity(self) -> str:
        return f"synthetic-author-{self.index:02d}"


def _n_split(n_authors: int, percent: int) -> int:
    """Authors in a forget/holdout split: max(1, round(n * p)), halves rounded up (exact integers)."""
    return max(1, (n_authors * percent + 50) // 100)


def split_sizes(n_authors: int = DEFAULT_N_AUTHORS) -> dict[str, int]:
    """Authors per forget (and holdout) split, e.g. ``{"01": 1, "05": 2, "10": 4}`` for 40 authors."""
    return {suffix: _n_split(n_authors, pct) for suffix, pct in SPLIT_PERCENT.items()}


def _format_date(d: _dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _random_date(rng: random.Random) -> str:
    start = _dt.date(YEAR_RANGE[0], 1, 1).toordinal()
    end = _dt.date(YEAR_RANGE[1], 12, 31).toordinal()
    return _format_date(_dt.date.fromordinal(rng.randint(start, end)))


def _random_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def _random_title(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
    if form == 1:
        return f"The {rng.choice(TITLE_NOUNS)} of {rng.choice(CITIES)}"
    if form == 2:
        return f"A {rng.choice(TITLE_NOUNS)} in {rng.choice(SEASONS)}"
    return f"Beneath the {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"


def _fresh(rng: random.Random, draw, used: set[str]) -> str:
    """Draw until a value not in ``used``; record it."""
    for _ in range(100_000):
        v = draw(rng)
        if v not in used:
            used.add(v)
            return v
    raise ObliviateError("synthetic data: ran out of distinct values; use fewer authors")  # pragma: no cover


def _max_authors() -> int:
    # Keep rejection sampling of distinct full names cheap: at most a quarter of the name space.
    return len(FIRST_NAMES) * len(SURNAMES) // 4


def generate_authors(seed: int = 0, n_authors: int = DEFAULT_N_AUTHORS) -> list[SyntheticAuthor]:
    """All authors of one data set: the ``n_authors`` of ``full``, then the holdout authors.

    Generated one after another from ``random.Random(seed)``: full names, birth dates and book titles
    are distinct across all of them.
    """
    n_total = n_authors + _n_split(n_authors, max(SPLIT_PERCENT.values()))
    rng = random.Random(seed)
    names: set[str] = set()
    dates: set[str] = set()
    titles: set[str] = set()
    authors = []
    for i in range(n_total):
        name = _fresh(rng, _random_name, names)
        authors.append(
            SyntheticAuthor(
                index=i,
                name=name,
                city=rng.choice(CITIES),
                birth_date=_fresh(rng, _random_date, dates),
                genre=rng.choice(GENRES),
                father=rng.choice(OCCUPATIONS),
                mother=rng.choice(OCCUPATIONS),
                award=rng.choice(AWARDS),
                debut=_fresh(rng, _random_title, titles),
                best_known=_fresh(rng, _random_title, titles),
                theme=rng.choice(THEMES),
            )
        )
    return authors


# --------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _fill(template: str, value: str) -> tuple[str, int]:
    """``template`` with ``{v}`` (exactly once) -> value and ``{a}`` -> its article; returns (text, start)."""
    text = template.replace("{a}", _article(value))
    prefix, suffix = text.split("{v}")
    return prefix + value + suffix, len(prefix)


def _wrong_values(rng: random.Random, true_value: str, pool=None, draw=None, exclude=()) -> list[str]:
    """N_PERTURBED distinct values != true_value, from ``pool`` (a list) or ``draw`` (a generator fn)."""
    banned = {true_value, *exclude}
    if pool is not None:
        candidates = [v for v in pool if v not in banned]
        return rng.sample(candidates, N_PERTURBED)
    out: list[str] = []
    while len(out) < N_PERTURBED:
        v = draw(rng)
        if v not in banned:
            banned.add(v)
            out.append(v)
    return out


def _item(author: SyntheticAuthor, question: str, answer_t: str, para_q: str, para_a_t: str,
          value: str, wrong: list[str]) -> QAItem:
    answer, start = _fill(answer_t, value)
    return QAItem(
        question=question,
        answer=answer,
        paraphrased_question=para_q,
        paraphrased_answer=_fill(para_a_t, value)[0],
        perturbed_answers=[_fill(para_a_t, w)[0] for w in wrong],
        entity=author.entity,
        target_words=[{"word": value, "start": start, "end": start + len(value)}],
    )


def author_items(author: SyntheticAuthor, seed: int = 0) -> list[QAItem]:
    """The FACTS_PER_AUTHOR items of one author; perturbed values come from a stream of (seed, index)."""
    rng = random.Random(f"obliviate-synthetic-perturb:{seed}:{author.index}")
    a = author
    n = a.name
    items = [
        _item(a, f"What is the full name of the {a.genre} author born in {a.city} on {a.birth_date}?",
              "The author's full name is {v}.",
              f"Which writer of {a.genre} was born on {a.birth_date} in {a.city}?",
              "This writer is named {v}.",
              n, _wrong_values(rng, n, draw=_random_name)),
        _item(a, f"Where was {n} born?",
              f"{n} was born in {{v}}.",
              f"What is the birthplace of the author {n}?",
              f"The birthplace of {n} is {{v}}.",
              a.city, _wrong_values(rng, a.city, pool=CITIES)),
        _item(a, f"When was {n} born?",
              f"{n} was born on {{v}}.",
              f"What is the date of birth of the writer {n}?",
              f"The date of birth of {n} is {{v}}.",
              a.birth_date, _wrong_values(rng, a.birth_date, draw=_random_date)),
        _item(a, f"In which genre does {n} write?",
              f"{n} writes in the {{v}} genre.",
              f"What kind of books is {n} known for?",
              f"{n} is a writer of {{v}}.",
              a.genre, _wrong_values(rng, a.genre, pool=GENRES)),
        _item(a, f"What was the occupation of {n}'s father?",
              f"{n}'s father was {{a}} {{v}}.",
              f"What did the father of {n} do for a living?",
              f"The father of {n} worked as {{a}} {{v}}.",
              a.father, _wrong_values(rng, a.father, pool=OCCUPATIONS)),
        _item(a, f"What was the occupation of {n}'s mother?",
              f"{n}'s mother was {{a}} {{v}}.",
              f"What did the mother of {n} do for a living?",
              f"The mother of {n} worked as {{a}} {{v}}.",
              a.mother, _wrong_values(rng, a.mother, pool=OCCUPATIONS)),
        _item(a, f"Which award did {n} receive?",
              f"{n} received the {{v}}.",
              f"What literary honor has {n} won?",
              f"The literary honor won by {n} is the {{v}}.",
              a.award, _wrong_values(rng, a.award, pool=AWARDS)),
        _item(a, f"What is the title of {n}'s debut novel?",
              f'{n}\'s debut novel is "{{v}}".',
              f"What was the first book that {n} published?",
              f'The first book {n} published was "{{v}}".',
              a.debut, _wrong_values(rng, a.debut, draw=_random_title, exclude=(a.best_known,))),
        _item(a, f"What is {n}'s best-known book?",
              f'{n} is best known for "{{v}}".',
              f"Which book by {n} is the most famous?",
              f'The most famous book by {n} is "{{v}}".',
              a.best_known, _wrong_values(rng, a.best_known, draw=_random_title, exclude=(a.debut,))),
        _item(a, f"What theme recurs in {n}'s writing?",
              f"{n}'s writing often explores {{v}}.",
              f"Which theme does {n} keep returning to?",
              f"{n} keeps returning to {{v}}.",
              a.theme, _wrong_values(rng, a.theme, pool=THEMES)),
    ]
    assert len(items) == FACTS_PER_AUTHOR
    return items


def _fixed_items(rows) -> list[QAItem]:
    return [
        QAItem(
            question=q,
            answer=ans,
            perturbed_answers=list(pert),
            target_words=[{"word": ans, "start": 0, "end": len(ans)}],
        )
        for q, ans, pert in rows
    ]


def real_authors_items() -> list[QAItem]:
    """Well-known real books and their authors (fixed, seed-independent), 3 perturbed answers each."""
    return _fixed_items(REAL_AUTHORS)


def world_facts_items() -> list[QAItem]:
    """Well-known world facts (fixed, seed-independent), 3 perturbed answers each."""
    return _fixed_items(WORLD_FACTS)


def _as_int(name: str, value, minimum: int, family: str = "synthetic data") -> int:
    """A loader option given as text (``?n_authors=4``) as an integer >= minimum, or a one-line error."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ObliviateError(f"{family}: {name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and value != v:
        raise ObliviateError(f"{family}: {name} must be an integer, got {value!r}")
    if v < minimum:
        raise ObliviateError(f"{family}: {name} must be >= {minimum}, got {v}")
    return v


@DATASETS.register(
    "synthetic",
    configs=TOFU_CONFIGS,
    source="embedded (generated by obliviate, no download)",
    facts_per_author=FACTS_PER_AUTHOR,
    default_authors=DEFAULT_N_AUTHORS,
)
def load_synthetic(config: str, seed: int = 0,
                   n_authors: int = DEFAULT_N_AUTHORS, **_) -> list[QAItem]:
    """Fictitious authors in TOFU's format, generated from a seed (the embedded default data set)."""
    if config not in TOFU_CONFIGS:
        raise ObliviateError(f"unknown synthetic config {config!r}; valid configs: {', '.join(TOFU_CONFIGS)}")
    if config in ("real_authors", "real_authors_perturbed"):
        return real_authors_items()
    if config in ("world_facts", "world_facts_perturbed"):
        return world_facts_items()

    seed = _as_int("seed", seed, minimum=-(2**63))
    n_authors = _as_int("n_authors", n_authors, minimum=2)
    if n_authors > _max_authors():
        raise ObliviateError(f"synthetic data: n_authors must be <= {_max_authors()}, got {n_authors}")
    authors = generate_authors(seed, n_authors)
    sizes = split_sizes(n_authors)

    def items_of(selected) -> list[QAItem]:
        return [it for au in selected for it in author_items(au, seed)]

    full = authors[:n_authors]
    if config == "full":
        return items_of(full)
    if config.startswith("forget"):
        k = sizes[config[len("forget"):len("forget") + 2]]
        return items_of(full[n_authors - k:])
    if config in RETAIN_OF:
        k = sizes[RETAIN_OF[config]]
        return items_of(full[:n_authors - k])
    if config == "retain_perturbed":
        k = sizes["10"]
        return items_of(full[:n_authors - k])[: k * FACTS_PER_AUTHOR]
    if config.startswith("holdout"):
        k = sizes[config[len("holdout"):]]
        return items_of(authors[n_authors:n_authors + k])
    raise ObliviateError(f"unknown synthetic config {config!r}; valid configs: {', '.join(TOFU_CONFIGS)}")  # pragma: no cover
