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

__all__ = ["NICKNAME_GROUPS", "nickname_groups"]

NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("ABIGAIL", "ABBIE", "ABBY", "ABI"),
    ("ALEXANDER", "ALEX", "ALEC", "ALEXIS", "SANDY", "XANDER"),
    ("ALEXANDRA", "ALEX", "ALEXA", "SANDRA", "SANDY", "LEXI"),
    ("ALFRED", "ALF", "ALFIE", "FRED", "FREDDIE"),
    ("ANDREW", "ANDY", "DREW"),
    ("ANNE", "ANN", "ANNA", "ANNIE", "NANCY"),
    ("ANTHONY", "ANTONY", "TONY", "ANT"),
    ("ARCHIBALD", "ARCHIE", "ARCHY"),
    ("BARBARA", "BARB", "BABS", "BARBIE"),
    ("BENJAMIN", "BEN", "BENNY", "BENJI"),
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
    ("DANIEL", "DAN", "DANNY"),
    ("DAVID", "DAVE", "DAVEY", "DAI"),
    ("DEBORAH", "DEBRA", "DEBBIE", "DEBBY", "DEB"),
    ("DOROTHY", "DOT", "DOTTIE", "DOLLY"),
    ("EDWARD", "ED", "EDDIE", "EDDY", "NED", "TED", "TEDDY"),
    ("EDMUND", "ED", "EDDIE", "NED"),
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
    ("GERALD", "GERRY", "JERRY"),
    ("HARRIET", "HATTIE", "HARRIE"),
    ("HENRY", "HARRY", "HAL", "HANK"),
    ("ISABEL", "ISABELLA", "ISOBEL", "IZZY", "BELLA", "ISSY"),
    ("JACQUELINE", "JACKIE", "JACQUI"),
    ("JAMES", "JIM", "JIMMY", "JIMMIE", "JAMIE", "JAS"),
    ("JANET", "JAN", "JANETTE"),
    ("JENNIFER", "JEN", "JENNY", "JENNIE", "JENNA"),
    ("JOHN", "JACK", "JOHNNY", "JON", "JONNY"),
    ("JONATHAN", "JON", "JONNY", "JONNIE", "NATHAN"),
    ("JOSEPH", "JOE", "JOEY", "JO"),
    ("JOSEPHINE", "JO", "JOSIE", "JOSEY"),
    ("JOANNA", "JOANNE", "JOAN", "JO"),
    ("KENNETH", "KEN", "KENNY"),
    ("LAWRENCE", "LAURENCE", "LARRY", "LAURIE"),
    ("LEONARD", "LEN", "LENNY", "LEO"),
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
    ("NATHANIEL", "NATHAN", "NATE", "NAT"),
    ("NATALIE", "NATALIA", "NAT", "TALLY"),
    ("NICHOLAS", "NICK", "NICKY", "NICO"),
    ("NICOLA", "NICOLE", "NIKKI", "NICKY"),
    ("OLIVER", "OLLIE", "OLLY", "NOLL"),
    ("PATRICIA", "PAT", "PATTY", "PATSY", "TRISH", "TRICIA"),
    ("PATRICK", "PAT", "PADDY"),
    ("PETER", "PETE"),
    ("PHILIP", "PHILLIP", "PHIL", "PIP"),
    ("REBECCA", "BECKY", "BECCA", "BEX"),
    ("RICHARD", "RICH", "RICK", "RICKY", "DICK", "RICHIE"),
    ("ROBERT", "ROB", "ROBBIE", "BOB", "BOBBY", "BERT"),
    ("RONALD", "RON", "RONNIE"),
    ("SAMUEL", "SAM", "SAMMY"),
    ("SAMANTHA", "SAM", "SAMMY", "SAMMIE"),
    ("SARAH", "SARA", "SALLY", "SADIE"),
    ("STEPHEN", "STEVEN", "STEVE", "STEVIE"),
    ("SUSAN", "SUZANNE", "SUSANNAH", "SUE", "SUSIE", "SUZY", "SUKIE"),
    ("TERENCE", "TERRENCE", "TERRY", "TEL"),
    ("THEODORE", "THEO", "TED", "TEDDY"),
    ("THOMAS", "TOM", "TOMMY"),
    ("TIMOTHY", "TIM", "TIMMY"),
    ("VICTORIA", "VICKY", "VICKIE", "TORI", "VIC"),
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


def nickname_groups(name: str) -> frozenset[int]:
    """Return the ids of the nickname groups ``name`` (upper case) belongs to."""
    return _INDEX.get(name, _EMPTY)
