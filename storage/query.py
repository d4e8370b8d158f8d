"""The one query engine: a ``noctis_pacs.core.model.Query`` compiled to parameterised SQL.

Implements PS3.4 C.2.2.2 matching (single value, list of UID, universal,
wildcard, range, sequence) over the index for both dialects; only the
placeholder differs.  Keys below the query level become an ``EXISTS``
sub-query, keys above it a join (relational queries).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from noctis_pacs.core.model import (
    BY_KEYWORD,
    SEQUENCE_ATTRIBUTES,
    Attribute,
    Level,
    Match,
    MatchKind,
    OrderDirection,
    Query,
    attributes_at,
)
from storage.index import normalise_time
from storage.parse import normalise_pn

_ALIAS = {"patients": "p", "studies": "st", "series": "se", "instances": "i"}
_TABLE_LEVEL = {
    "patients": Level.PATIENT,
    "studies": Level.STUDY,
    "series": Level.SERIES,
    "instances": Level.IMAGE,
}
_FROM = {
    Level.PATIENT: "patients p",
    Level.STUDY: "studies st JOIN patients p ON st.patient_fk = p.id",
    Level.SERIES: "series se JOIN studies st ON se.study_fk = st.id"
    " JOIN patients p ON st.patient_fk = p.id",
    Level.IMAGE: "instances i JOIN series se ON i.series_fk = se.id"
    " JOIN studies st ON se.study_fk = st.id JOIN patients p ON st.patient_fk = p.id",
}
_ID = {Level.PATIENT: "p.id", Level.STUDY: "st.id", Level.SERIES: "se.id", Level.IMAGE: "i.id"}
#: Lower-level chains for EXISTS: (FROM clause, link to the outer level's id column).
_BELOW: dict[tuple[Level, Level], tuple[str, str]] = {
    (Level.PATIENT, Level.STUDY): ("studies st", "st.patient_fk = p.id"),
    (Level.PATIENT, Level.SERIES): (
        "studies st JOIN series se ON se.study_fk = st.id",
        "st.patient_fk = p.id",
    ),
    (Level.PATIENT, Level.IMAGE): (
        "studies st JOIN series se ON se.study_fk = st.id JOIN instances i ON i.series_fk = se.id",
        "st.patient_fk = p.id",
    ),
    (Level.STUDY, Level.SERIES): ("series se", "se.study_fk = st.id"),
    (Level.STUDY, Level.IMAGE): (
        "series se JOIN instances i ON i.series_fk = se.id",
        "se.study_fk = st.id",
    ),
    (Level.SERIES, Level.IMAGE): ("instances i", "i.series_fk = se.id"),
}
_DEFAULT_ORDER = {
    Level.PATIENT: ("p.id",),
    Level.STUDY: ("st.study_date DESC", "st.study_time DESC", "st.id"),
    Level.SERIES: ("se.series_number", "se.id"),
    Level.IMAGE: ("i.instance_number", "i.id"),
}
_INT_COLUMNS = frozenset(
    {
        "series_number",
        "instance_number",
        "rows",
        "columns",
        "bits_allocated",
        "number_of_frames",
        "acquisition_number",
        "num_studies",
        "num_series",
        "num_instances",
    }
)
_PN_NORM = {
    "patients.patient_name": "p.patient_name_norm",
    "studies.referring_physician_name": "st.referring_physician_name_norm",
}

LOCATOR_COLUMNS = (
    "i.sop_uid",
    "i.sop_class_uid",
    "i.transfer_syntax_uid",
    "i.blob_key",
    "i.blob_size",
    "i.frames",
    "se.series_uid",
    "st.study_uid",
    "i.number_of_frames",
    "i.id",
)


#: Integer keys and paging stay within a signed 32-bit range (IS is at most 12 characters,
#: PS3.5 6.2; the index columns are 64-bit).
MAX_INTEGER = 2**31 - 1


class QueryError(ValueError):
    """A key cannot be matched as given; the message names the key."""


def _sql_column(column: str) -> str:
    table, _, name = column.partition(".")
    return f"{_ALIAS[table]}.{name}"


def _column_level(column: str) -> Level:
    return _TABLE_LEVEL[column.partition(".")[0]]


def _like_pattern(value: str) -> str:
    out = []
    for char in value:
        if char in "!%_":
            out.append("!" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _range_bound(vr: str, value: str, high: bool, keyword: str = "") -> str:
    """A range bound in the index's form; ``QueryError`` for one that is not a DA / TM."""
    text = value.strip()
    if vr == "DA":
        text = text.replace(".", "")  # ACR-NEMA YYYY.MM.DD
        if not _DA.match(text):
            raise QueryError(f"{keyword}: {value!r} is not a date YYYYMMDD (PS3.5 6.2)")
        return text
    if vr == "TM":
        if not _TM.match(text.replace(":", "")):
            raise QueryError(f"{keyword}: {value!r} is not a time HHMMSS.FFFFFF (PS3.5 6.2)")
        head, dot, frac = text.replace(":", "").partition(".")
        if high:
            return head.ljust(6, "9") + (dot + frac if frac else ".999999")
        return normalise_time(text)
    return text


@dataclass(frozen=True)
class Column:
    """How one matchable column is matched: its SQL, VR and storage form."""

    sql: str
    vr: str
    multi_valued: bool = False  # stored as ``\\a\\b\\`` (ModalitiesInStudy, station AEs)
    integer: bool = False
    pn_folded: str | None = None  # the case- and accent-folded twin of a PN column


def _contains(value: str) -> str:
    """LIKE pattern for one value of a ``\\a\\b\\`` multi-valued column."""
    return f"%\\{_like_pattern(value)}\\%"


def match_condition(
    column: Column, match: Match, *, param: Callable[[Any], str], case_insensitive_pn: bool
) -> str:
    """The SQL condition for ``match`` on ``column`` (PS3.4 C.2.2.2); ``param(value)``
    records a value and returns its placeholder, so values never enter the SQL text.

    The one matching implementation behind C-FIND, QIDO-RS and Modality Worklist.
    """
    vr, kind = column.vr, match.kind
    pn_ci = vr == "PN" and case_insensitive_pn and column.pn_folded is not None
    col = column.pn_folded if pn_ci and column.pn_folded else column.sql

    def value_of(text: str) -> Any:
        if column.integer:
            try:
                number = int(text)
            except ValueError:
                raise QueryError(f"{match.keyword}: {text!r} is not an integer") from None
            if not -MAX_INTEGER <= number <= MAX_INTEGER:
                raise QueryError(f"{match.keyword}: {text!r} is out of range")
            return number
        if pn_ci:
            return normalise_pn(text)
        if vr == "TM":
            return normalise_time(text)
        return text

    if kind is MatchKind.SINGLE:
        if column.multi_valued:
            return f"{col} LIKE {param(_contains(match.value))} ESCAPE '!'"
        if vr == "PN" and not pn_ci:
            # PS3.4 C.2.2.2.1: trailing empty components are not significant.
            return f"RTRIM({col}, '^') = {param(match.value.rstrip('^'))}"
        return f"{col} = {param(value_of(match.value))}"
    if kind is MatchKind.LIST_OF_UID:
        if not match.values:
            # A list of zero-length values ("\\"): each is a universal match (PS3.4
            # C.2.2.2.3); "IN ()" is an SQL syntax error on PostgreSQL.
            return "1 = 1"
        if column.multi_valued:
            parts = [f"{col} LIKE {param(_contains(v))} ESCAPE '!'" for v in match.values]
            return "(" + " OR ".join(parts) + ")"
        marks = ", ".join(param(value_of(v)) for v in match.values)
        return f"{col} IN ({marks})"
    if kind is MatchKind.WILDCARD:
        if column.integer:
            raise QueryError(f"{match.keyword}: wildcards do not apply to numbers")
        pattern = _like_pattern(normalise_pn(match.value) if pn_ci else match.value)
        if column.multi_valued:
            pattern = f"%\\{pattern}\\%"
        return f"{col} LIKE {param(pattern)} ESCAPE '!'"
    if kind is MatchKind.RANGE:
        if vr not in ("DA", "TM", "DT"):
            raise QueryError(f"{match.keyword}: range matching applies to dates and times")
        low, high = match.values
        if not low and not high:
            raise QueryError(f"{match.keyword}: a range needs at least one bound")
        clauses = [f"{col} <> ''"]
        if low:
            clauses.append(f"{col} >= {param(_range_bound(vr, low, False, match.keyword))}")
        if high:
            clauses.append(f"{col} <= {param(_range_bound(vr, high, True, match.keyword))}")
        return "(" + " AND ".join(clauses) + ")"
    raise QueryError(f"{match.keyword}: unsupported matching")


@dataclass
class Compiled:
    sql: str
    params: list[Any]
    count_sql: str
    count_params: list[Any]
    keywords: list[str]
    ignored: list[str] = field(default_factory=list)


class Compiler:
    def __init__(self, placeholder: str) -> None:
        self.ph = placeholder

    def _condition(
        self, attr_column: str, vr: str, match: Match, query: Query, multi: bool
    ) -> tuple[str, list[Any]]:
        if vr == "PN" and query.fuzzy and match.kind in (MatchKind.SINGLE, MatchKind.WILDCARD):
            return self._fuzzy(attr_column, match.value)
        params: list[Any] = []

        def param(value: Any) -> str:
            params.append(value)
            return self.ph

        column = Column(
            sql=_sql_column(attr_column),
            vr=vr,
            multi_valued=multi,
            integer=attr_column.partition(".")[2] in _INT_COLUMNS,
            pn_folded=_PN_NORM.get(attr_column),
        )
        sql = match_condition(
            column, match, param=param, case_insensitive_pn=query.case_insensitive_pn
        )
        return sql, params

    def _fuzzy(self, attr_column: str, value: str) -> tuple[str, list[Any]]:
        """Fuzzy PN: every word of the value prefixes a word of the name, any order, any case."""
        words = normalise_pn(value.replace("*", " ").replace("?", " ")).replace("^", " ").split()
        if not words:
            return "1 = 1", []
        if attr_column == "patients.patient_name":
            col, fmt = "p.patient_name_words", "% {}%"
        else:
            col, fmt = _PN_NORM.get(attr_column, _sql_column(attr_column)), "%{}%"
        parts = [f"{col} LIKE {self.ph} ESCAPE '!'"] * len(words)
        return "(" + " AND ".join(parts) + ")", [fmt.format(_like_pattern(w)) for w in words]

    def _conditions(self, query: Query) -> tuple[dict[Level, list[str]], list[Any], list[str]]:
        by_level: dict[Level, list[str]] = {}
        params_by_level: dict[Level, list[Any]] = {}
        ignored: list[str] = []

        def add(level: Level, sql: str, params: list[Any]) -> None:
            by_level.setdefault(level, []).append(sql)
            params_by_level.setdefault(level, []).extend(params)

        for match in query.matches:
            if match.kind is MatchKind.UNIVERSAL:
                continue
            if match.kind is MatchKind.SEQUENCE:
                mapping = SEQUENCE_ATTRIBUTES.get(match.keyword)
                if mapping is None:
                    ignored.append(match.keyword)
                    continue
                for item in match.items:
                    column = mapping.get(item.keyword)
                    if column is None or item.kind is MatchKind.UNIVERSAL:
                        if column is None:
                            ignored.append(f"{match.keyword}.{item.keyword}")
                        continue
                    vr = "SH"
                    sql, params = self._condition(column, vr, item, query, False)
                    add(_column_level(column), sql, params)
                continue
            attr: Attribute | None = BY_KEYWORD.get(match.keyword)
            if attr is None:
                ignored.append(match.keyword)
                continue
            sql, params = self._condition(attr.column, attr.vr, match, query, attr.multi_valued)
            add(attr.level, sql, params)
        # Parameters must follow the order the clauses appear in the final SQL.
        ordered: list[Any] = []
        for level in sorted(by_level):
            ordered.extend(params_by_level[level])
        return by_level, ordered, ignored

    def compile(
        self, query: Query, *, max_results: int, select: Sequence[str] | None = None
    ) -> Compiled:
        """Compile ``query``; ``select`` replaces the attribute columns (e.g. ``LOCATOR_COLUMNS``)."""
        level = query.level
        by_level, params, ignored = self._conditions(query)
        where: list[str] = []
        for cond_level in sorted(by_level):
            clauses = by_level[cond_level]
            if cond_level <= level:
                where.extend(clauses)
            else:
                source, link = _BELOW[(level, cond_level)]
                inner = " AND ".join([link, *clauses])
                where.append(f"EXISTS (SELECT 1 FROM {source} WHERE {inner})")
        if query.facilities:
            # A scoped principal sees only its facilities' studies (issue 13 point 4): the
            # one place every query, locate and metadata read is narrowed.
            marks = ", ".join(self.ph for _ in query.facilities)
            condition = f"st.facility IN ({marks})"
            if level is Level.PATIENT:
                condition = (
                    f"EXISTS (SELECT 1 FROM studies st WHERE st.patient_fk = p.id AND {condition})"
                )
            where.append(condition)
            params = [*params, *sorted(query.facilities)]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        keywords: list[str] = []
        if select is not None:
            columns = ", ".join(select)
        else:
            attrs = [a for lvl in Level if lvl <= level for a in attributes_at(lvl)]
            keywords = [a.keyword for a in attrs]
            columns = ", ".join(_sql_column(a.column) for a in attrs)
        order = []
        for keyword, direction in query.order_by:
            attr = BY_KEYWORD.get(keyword)
            if attr is None or attr.level > level:
                raise QueryError(f"orderby: {keyword} cannot order {level.name} results")
            order.append(
                f"{_sql_column(attr.column)} {'DESC' if direction is OrderDirection.DESC else 'ASC'}"
            )
        order.extend(_DEFAULT_ORDER[level])
        if _ID[level] not in order:
            order.append(_ID[level])
        limit = max_results if query.limit is None else min(query.limit, max_results)
        base = f"FROM {_FROM[level]}{where_sql}"
        sql = (
            f"SELECT {columns} {base} ORDER BY {', '.join(order)}"
            f" LIMIT {int(limit) + 1} OFFSET {int(min(max(query.offset, 0), MAX_INTEGER))}"
        )
        return Compiled(
            sql=sql,
            params=params,
            count_sql=f"SELECT COUNT(*) {base}",
            count_params=list(params),
            keywords=keywords,
            ignored=ignored,
        )


def row_to_dict(keywords: Sequence[str], row: Sequence[Any]) -> dict[str, object]:
    out: dict[str, object] = {}
    for keyword, value in zip(keywords, row, strict=True):
        attr = BY_KEYWORD[keyword]
        if attr.multi_valued:
            out[keyword] = [v for v in str(value or "").split("\\") if v]
        elif value is None:
            out[keyword] = ""
        else:
            out[keyword] = value
    return out
