"""A small table of common English given-name variants (nicknames and short forms).

Each group lists names that people commonly use for one another: a formal name with its
short forms and pet forms. The table was written by hand for this project and is kept
deliberately small: it covers frequent English given names and well-known diminutives,
not every cultural variant. Spelling variants (Steven/Stephen, Catherine/Katherine) are
caught by the fuzzy and phonetic levels in :mod:`sharedcare.identity.compare`, so they
only appear here when the pet forms tie them together anyway.

A name may belong to more than one group (``ALEX`` is short for Alexander and Alexandra;
``CHRIS`` for Christopher and Christine); two names are treated as nickname-equivalent
when they share at least one group.
"""

from __future__ import annotations

from functools import lru_cache

from rapidfuzz.distance import DamerauLevenshtein

__all__ = ["NICKNAME_GROUPS", "near_nickname_groups", "nickname_groups"]

NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("ABIGAIL", "ABBIE", "ABBY", "ABI"),
    ("ALBERT", "ALBIE", "BERT", "BERTIE", "AL"),
    ("ALEXANDER", "ALEX", "ALEC", "ALEXIS", "SANDY", "XANDER"),
    ("ALEXANDRA", "ALEX", "ALEXA", "SANDRA", "SANDY", "LEXI"),
    ("ALFRED", "ALF", "ALFIE", "FRED", "FREDDIE"),
    ("AMANDA", "MANDY", "MANDA"),
    ("ANDREW", "ANDY", "DREW"),
    ("ANGELA", "ANGIE", "ANGE"),
    ("ANNE", "ANN", "ANNA", "ANNIE", "NANCY"),
    ("ANTHONY", "ANTONY", "TONY", "ANT"),
    ("ARCHIBALD", "ARCHIE", "ARCHY"),
    ("ARTHUR", "ART", "ARTIE"),
    ("BARBARA", "BARB", "BABS", "BARBIE"),
    ("BENJAMIN", "BEN", "BENNY", "BENJI"),
    ("BERNARD", "BERNIE", "BERN"),
    ("BEVERLEY", "BEVERLY", "BEV"),
    ("BRADLEY", "BRAD"),
    ("CAROLINE", "CAROLYN", "CAROL", "CARRIE", "CARO"),
    (
        "CATHERINE",
        "KATHERINE",
        "CATHARINE",
        "KATHRYN",
        "KATE",
        "KATIE",
        "KATY",
        "KAT",
        "CATH",
        "CATHY",
        "KATHY",
        "KITTY",
    ),
    ("CHARLES", "CHARLIE", "CHARLEY", "CHAS", "CHUCK"),
    ("CHARLOTTE", "CHARLIE", "LOTTIE", "LOTTE"),
    ("CHRISTINE", "CHRISTINA", "CHRIS", "CHRISSIE", "TINA", "KIRSTY", "KIRSTEN"),
    ("CHRISTOPHER", "CHRIS", "KRIS", "KIT"),
    ("CLIFFORD", "CLIFF"),
    ("DANIEL", "DAN", "DANNY"),
    ("DAVID", "DAVE", "DAVEY", "DAI"),
    ("DEBORAH", "DEBRA", "DEBBIE", "DEBBY", "DEB"),
    ("DONALD", "DON", "DONNIE"),
    ("DOROTHY", "DOT", "DOTTIE", "DOLLY"),
    ("DOUGLAS", "DOUG", "DOUGIE"),
    ("EDMUND", "ED", "EDDIE", "NED"),
    ("EDWARD", "ED", "EDDIE", "EDDY", "NED", "TED", "TEDDY"),
    ("ELEANOR", "ELEANORE", "ELLIE", "NELL", "NELLIE", "NORA"),
    (
        "ELIZABETH",
        "ELISABETH",
        "LIZ",
        "LIZZIE",
        "LIZZY",
        "BETH",
        "BETTY",
        "BETSY",
        "ELIZA",
        "ELSIE",
        "LIBBY",
        "BESS",
        "BESSIE",
        "LISA",
    ),
    ("EMILY", "EM", "EMMY", "MILLIE"),
    ("FRANCES", "FRAN", "FRANNY", "FRANKIE"),
    ("FRANCIS", "FRANK", "FRANKIE"),
    ("FREDERICK", "FRED", "FREDDIE", "FREDDY"),
    ("GEOFFREY", "JEFFREY", "GEOFF", "JEFF"),
    ("GEORGINA", "GEORGIE", "GINA"),
    ("GERALD", "GERRY", "JERRY"),
    ("GILLIAN", "GILL", "GILLY", "JILL", "JILLY"),
    ("GREGORY", "GREG"),
    ("HAROLD", "HARRY", "HAL"),
    ("HARRIET", "HATTIE", "HARRIE"),
    ("HENRY", "HARRY", "HAL", "HANK"),
    ("ISABEL", "ISABELLA", "ISOBEL", "IZZY", "BELLA", "ISSY"),
    ("JACQUELINE", "JACKIE", "JACQUI"),
    ("JAMES", "JIM", "JIMMY", "JIMMIE", "JAMIE", "JAS"),
    ("JANET", "JAN", "JANETTE"),
    ("JENNIFER", "JEN", "JENNY", "JENNIE", "JENNA"),
    ("JESSICA", "JESS", "JESSIE", "JESSY"),
    ("JOANNA", "JOANNE", "JOAN", "JO"),
    ("JOHN", "JACK", "JOHNNY", "JON", "JONNY"),
    ("JONATHAN", "JON", "JONNY", "JONNIE", "NATHAN"),
    ("JOSEPH", "JOE", "JOEY", "JO"),
    ("JOSEPHINE", "JO", "JOSIE", "JOSEY"),
    ("JOSHUA", "JOSH"),
    ("JUDITH", "JUDY", "JUDE"),
    ("KENNETH", "KEN", "KENNY"),
    ("KIMBERLEY", "KIMBERLY", "KIM"),
    ("LAWRENCE", "LAURENCE", "LARRY", "LAURIE"),
    ("LEONARD", "LEN", "LENNY", "LEO"),
    ("LESLIE", "LESLEY", "LES"),
    ("LOUISE", "LOUISA", "LOU", "LULU"),
    ("MALCOLM", "MAL"),
    (
        "MARGARET",
        "MAGGIE",
        "MEG",
        "MEGAN",
        "PEGGY",
        "MADGE",
        "MARGE",
        "MAISIE",
        "GRETA",
        "PEG",
        "DAISY",
    ),
    ("MARY", "MOLLY", "POLLY", "MAE", "MAY", "MAMIE"),
    ("MATTHEW", "MATT", "MATTY"),
    ("MICHAEL", "MIKE", "MICK", "MICKY", "MICKEY", "MIKEY"),
    ("MICHELLE", "SHELLEY", "MICHY"),
    ("NATALIE", "NATALIA", "NAT", "TALLY"),
    ("NATHANIEL", "NATHAN", "NATE", "NAT"),
    ("NICHOLAS", "NICK", "NICKY", "NICO"),
    ("NICOLA", "NICOLE", "NIKKI", "NICKY"),
    ("OLIVER", "OLLIE", "OLLY", "NOLL"),
    ("PAMELA", "PAM", "PAMMY"),
    ("PATRICIA", "PAT", "PATTY", "PATSY", "TRISH", "TRICIA"),
    ("PATRICK", "PAT", "PADDY"),
    ("PETER", "PETE"),
    ("PHILIP", "PHILLIP", "PHIL", "PIP"),
    ("RAYMOND", "RAY"),
    ("REBECCA", "BECKY", "BECCA", "BEX"),
    ("REGINALD", "REG", "REGGIE"),
    ("RICHARD", "RICH", "RICK", "RICKY", "DICK", "RICHIE"),
    ("ROBERT", "ROB", "ROBBIE", "BOB", "BOBBY", "BERT"),
    ("RONALD", "RON", "RONNIE"),
    ("ROSEMARY", "ROSE", "ROSIE"),
    ("SAMANTHA", "SAM", "SAMMY", "SAMMIE"),
    ("SAMUEL", "SAM", "SAMMY"),
    ("SARAH", "SARA", "SALLY", "SADIE"),
    ("STANLEY", "STAN"),
    ("STEPHEN", "STEVEN", "STEVE", "STEVIE"),
    ("STUART", "STEWART", "STU"),
    ("SUSAN", "SUZANNE", "SUSANNAH", "SUE", "SUSIE", "SUZY", "SUKIE"),
    ("TERENCE", "TERRENCE", "TERRY", "TEL"),
    ("THEODORE", "THEO", "TED", "TEDDY"),
    ("THOMAS", "TOM", "TOMMY"),
    ("TIMOTHY", "TIM", "TIMMY"),
    ("VALERIE", "VAL"),
    ("VICTORIA", "VICKY", "VICKIE", "TORI", "VIC"),
    ("VINCENT", "VINCE", "VIN"),
    ("WALTER", "WALLY", "WALT"),
    ("WILLIAM", "WILL", "BILL", "BILLY", "WILLIE", "WILLY", "LIAM", "WILF"),
    ("ZACHARY", "ZACH", "ZAC", "ZACK"),
)
"""Groups of given names that commonly stand for one another (upper case)."""


def _build_index() -> dict[str, frozenset[int]]:
    index: dict[str, set[int]] = {}
    for number, group in enumerate(NICKNAME_GROUPS):
        for name in group:
            index.setdefault(name, set()).add(number)
    return {name: frozenset(groups) for name, groups in index.items()}


_INDEX = _build_index()
_EMPTY: frozenset[int] = frozenset()


_MIN_TYPO_LENGTH = 6


def nickname_groups(name: str) -> frozenset[int]:
    """Return the ids of the nickname groups ``name`` (upper case) belongs to."""
    return _INDEX.get(name, _EMPTY)


def near_nickname_groups(name: str) -> frozenset[int]:
    """Groups of the one table name that ``name`` is a typo of, for names not in the table.

    A name of six or more letters that is not in the table but is one typo (a letter
    changed, dropped, added, or two swapped) from exactly one name in it takes that name's
    groups: ``NIICHOLAS`` is still Nicholas, so still Nick. Shorter names are left alone;
    one letter turns too many short names into others (Kay, Ray, May).
    """
    if name in _INDEX or len(name) < _MIN_TYPO_LENGTH:
        return _EMPTY
    return _near(name)


@lru_cache(maxsize=65_536)
def _near(name: str) -> frozenset[int]:
    close = [
        known
        for known in _INDEX
        if abs(len(known) - len(name)) <= 1
        and len(known) >= _MIN_TYPO_LENGTH - 1
        and DamerauLevenshtein.distance(known, name, score_cutoff=1) <= 1
    ]
    return _INDEX[close[0]] if len(close) == 1 else _EMPTY
