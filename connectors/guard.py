"""The read-only statement guard: the parser layer of "read-only is three layers".

A statement passes only if sqlglot parses it in the connector's dialect into
exactly ONE statement whose WHOLE tree consists of allow-listed node types
(SELECT / set operations / CTEs / expressions) and allow-listed functions.
Everything else -- DML or DDL anywhere in the tree (``WITH x AS (DELETE ...)``),
``SELECT ... INTO``, locking clauses, COPY, CALL/EXEC, SET, transaction
control, statements sqlglot could only keep as an opaque ``Command`` -- is
refused with :class:`ReadOnlyViolation`. The check is an allow-list, so a node
type or function this module has never heard of is refused (fail closed).

The connector then executes :attr:`GuardedStatement.sql`, the statement
*regenerated from the checked tree* without comments, so what runs is exactly
what was checked: comment tricks and parser differentials (nested comments,
MySQL ``/*! ... */`` executable comments) cannot smuggle a second statement.

Framework-free: no Django import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import TokenType

from migration.engine.errors import ReadOnlyViolation

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_NODES",
    "CATALOG_FUNCTIONS",
    "Guard",
    "GuardedStatement",
    "check_select",
    "strip_literals",
]

# Structural / expression node types a read-only SELECT may contain.
ALLOWED_NODES: frozenset[str] = frozenset(
    """
    Select Union Intersect Except With CTE Subquery From Join Where Group Having
    Order Ordered Limit Offset Fetch Qualify Window WindowSpec Column Identifier
    Table TableAlias Alias Star Dot Literal Null Boolean Paren Tuple Distinct
    DataType DataTypeParam Var Interval IntervalSpan Neg Not And Or EQ NEQ GT
    GTE LT LTE NullSafeEQ NullSafeNEQ Is In Between Like ILike Add Sub Mul Div
    IntDiv Mod DPipe Exists Any All Values Filter WithinGroup RespectNulls
    IgnoreNulls Escape Bracket Collate Cube Rollup GroupingSets LimitOptions
    """.split()
)

# Typed sqlglot function classes that compute values and touch nothing else.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    """
    Count Sum Avg Min Max Stddev StddevPop StddevSamp Variance VariancePop
    GroupConcat ArrayAgg ApproxDistinct CountIf Median PercentileCont
    PercentileDisc AnyValue First Last FirstValue LastValue NthValue Lag Lead
    RowNumber Rank DenseRank Ntile PercentRank CumeDist
    Upper Lower Trim Substring Length Concat ConcatWs Left Right Pad Initcap
    Reverse StrPosition RegexpReplace RegexpExtract RegexpLike SplitPart
    Ascii Chr Unicode Levenshtein Soundex Replace Translate
    CurrentDate CurrentTimestamp CurrentTime DateAdd DateSub DateDiff DateTrunc
    TimestampTrunc Extract StrToDate StrToTime TimeToStr DateToDateStr
    TsOrDsToDate TsOrDsAdd TsOrDsToTimestamp DateStrToDate Date Datetime Time
    Timestamp Day Month Year Week Quarter Hour Minute Second DayOfWeek
    DayOfMonth DayOfYear ToChar ToNumber UnixToTime UnixToStr StrToUnix
    TimeStrToTime TimestampAdd TimestampDiff AddMonths LastDay MonthsBetween
    DateFromParts ToDays DatetimeAdd DatetimeSub DatetimeDiff
    Abs Round Floor Ceil Sqrt Pow Exp Ln Log Sign Greatest Least
    Case If Coalesce Nullif Cast TryCast MD5 SHA SHA2 Hex Anonymous
    """.split()
)

# Names of functions sqlglot keeps as ``Anonymous`` that are pure value functions.
ALLOWED_ANONYMOUS: frozenset[str] = frozenset(
    """
    strftime julianday date datetime time printf format instr ifnull nvl iif
    substr ltrim rtrim btrim char_length character_length octet_length
    date_part age make_date to_date to_timestamp date_format str_to_date
    datediff dayofweek dayname monthname lpad rpad nullif greatest least
    typeof abs mod power trunc truncate ceiling sign random_normal
    convert_tz makedate last_day to_days from_days weekday yearweek
    initcap regexp_matches regexp_substr regexp_instr split_part
    """.split()
)

# Read-only catalog/session inspection functions the kinds use themselves
# (discover/check). Not part of the default allow-list for user SELECTs.
CATALOG_FUNCTIONS: frozenset[str] = frozenset(
    """
    has_table_privilege has_schema_privilege has_database_privilege
    current_setting current_schema current_database version pg_is_in_recovery
    pg_table_is_visible obj_description col_description format_type
    pg_get_constraintdef database schema user current_user session_user
    sqlite_version current_version pragma_table_info pragma_table_xinfo pragma_foreign_key_list
    pragma_index_list pragma_index_info
    """.split()
)

# Node types refused with a specific reason (they would be refused anyway,
# being absent from the allow-lists; the reason just reads better).
_REASONS: dict[type[exp.Expression], str] = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.Create: "DDL (CREATE)",
    exp.Drop: "DDL (DROP)",
    exp.Alter: "DDL (ALTER)",
    exp.TruncateTable: "TRUNCATE",
    exp.Into: "SELECT ... INTO",
    exp.Lock: "locking clause (FOR UPDATE/SHARE)",
    exp.Copy: "COPY",
    exp.Command: "statement sqlglot cannot parse (Command)",
    exp.Set: "SET",
    exp.Transaction: "transaction control",
    exp.Commit: "transaction control",
    exp.Rollback: "transaction control",
    exp.Grant: "GRANT",
    exp.Use: "USE",
    exp.Pragma: "PRAGMA",
    exp.Placeholder: "bind placeholder",
    exp.Parameter: "session/user variable",
    exp.SessionParameter: "session/user variable",
    exp.Hint: "optimizer hint",
}

_log = logging.getLogger("pasportal.connectors.guard")
_EMBEDDED = re.compile(
    r";\s*(delete|insert|update|merge|drop|alter|create|grant|revoke|truncate|copy|"
    r"exec|execute|call|set|begin|commit|rollback|do|load|attach|pragma)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GuardedStatement:
    """A statement that passed the guard: execute ``sql``, not the input text."""

    sql: str
    tables: frozenset[str]
    tree: exp.Expression = field(repr=False, compare=False)


def _normalise_name(name: str) -> str:
    return name.strip('"`[]').lower()


class Guard:
    """A per-connector guard: dialect, optional table allow-list, extra functions."""

    def __init__(
        self,
        dialect: str | None = None,
        *,
        allowed_tables: Iterable[str] | None = None,
        extra_functions: Iterable[str] = (),
    ) -> None:
        self.dialect = dialect or None
        self.allowed_tables = (
            None
            if allowed_tables is None
            else frozenset(_normalise_name(t) for t in allowed_tables)
        )
        self.extra_functions = frozenset(f.lower() for f in extra_functions)

    def with_catalog(self) -> Guard:
        """Return a guard that also allows catalog-inspection functions (no table list)."""
        return Guard(
            self.dialect,
            allowed_tables=None,
            extra_functions=self.extra_functions | CATALOG_FUNCTIONS,
        )

    def check(self, sql: str) -> GuardedStatement:
        """Return the checked statement; raise ReadOnlyViolation with a reason."""
        tree = self._parse_one(sql)
        self._walk(tree)
        tables = self._tables(tree)
        try:
            regenerated = tree.sql(dialect=self.dialect, comments=False)
        except Exception as exc:  # generator gaps: fail closed
            raise ReadOnlyViolation(
                f"refused: statement cannot be regenerated ({type(exc).__name__})"
            ) from None
        return GuardedStatement(sql=regenerated, tables=tables, tree=tree)

    # ------------------------------------------------------------------ steps

    def _parse_one(self, sql: str) -> exp.Expression:
        if not isinstance(sql, str) or not sql.strip():
            raise ReadOnlyViolation("refused: empty statement")
        if "\x00" in sql:
            raise ReadOnlyViolation("refused: NUL byte in statement")
        # MySQL/MariaDB execute the body of /*! ... */ comments; sqlglot drops it.
        if re.search(r"/\*\s*[!+]", sql):
            raise ReadOnlyViolation(
                "refused: executable comment or hint (/*! or /*+) in statement"
            )
        try:
            # Silence sqlglot's "falling back to Command" warning: we refuse those.
            level = logging.getLogger("sqlglot").level
            logging.getLogger("sqlglot").setLevel(logging.ERROR)
            try:
                trees = sqlglot.parse(
                    sql, read=self.dialect, error_level=ErrorLevel.RAISE
                )
            finally:
                logging.getLogger("sqlglot").setLevel(level)
        except (ParseError, TokenError) as exc:
            first = str(exc).splitlines()[0][:120] if str(exc) else ""
            raise ReadOnlyViolation(
                f"refused: statement does not parse ({first})"
            ) from None
        except Exception as exc:  # any parser crash: fail closed
            raise ReadOnlyViolation(
                f"refused: statement does not parse ({type(exc).__name__})"
            ) from None
        trees = [t for t in trees if t is not None]
        if len(trees) != 1:
            raise ReadOnlyViolation(
                f"refused: exactly one statement allowed, got {len(trees)}"
            )
        top = trees[0]
        if not isinstance(top, (exp.Select, exp.SetOperation, exp.Subquery)):
            reason = self._reason(top) or f"top-level {type(top).__name__}"
            raise ReadOnlyViolation(f"refused: {reason} is not a read-only SELECT")
        self._first_token(sql)
        return top

    def _first_token(self, sql: str) -> None:
        # Shorthands sqlglot rewrites into a SELECT (``TABLE t``) are refused:
        # what we check must be what the author wrote.
        try:
            tokens = Dialect.get_or_raise(self.dialect).tokenize(sql)
        except Exception:
            raise ReadOnlyViolation("refused: statement does not tokenize") from None
        if not tokens or tokens[0].token_type not in (
            TokenType.SELECT,
            TokenType.WITH,
            TokenType.L_PAREN,
        ):
            raise ReadOnlyViolation("refused: statement must start with SELECT or WITH")

    def _reason(self, node: exp.Expression) -> str | None:
        for cls, reason in _REASONS.items():
            if isinstance(node, cls):
                return reason
        return None

    def _walk(self, tree: exp.Expression) -> None:
        for node in tree.walk():
            name = type(node).__name__
            reason = self._reason(node)
            if reason is not None:
                raise ReadOnlyViolation(f"refused: {reason} is not allowed")
            if isinstance(node, exp.Select) and not node.expressions:
                raise ReadOnlyViolation("refused: empty select list")
            if isinstance(node, (exp.Literal, exp.Identifier)) and _EMBEDDED.search(
                str(node.this)
            ):
                # Text that reads as a second statement inside a string or a
                # quoted name: a lexing differential between us and the server.
                raise ReadOnlyViolation(
                    "refused: embedded statement in a string or name"
                )
            if name in ALLOWED_NODES:
                continue  # operators (some are Func subclasses in sqlglot)
            if isinstance(node, exp.Func):
                self._check_function(node)
                continue
            raise ReadOnlyViolation(
                f"refused: {name} is not allowed in a read-only SELECT"
            )
        # SELECT with locking/into hidden in args of a set operation's operands
        for sel in tree.find_all(exp.Select):
            if sel.args.get("into") or sel.args.get("locks"):
                raise ReadOnlyViolation("refused: SELECT ... INTO / FOR UPDATE")

    def _check_function(self, node: exp.Func) -> None:
        name = type(node).__name__
        if isinstance(node, exp.Anonymous):
            fname = str(node.name).lower()
            if fname in ALLOWED_ANONYMOUS or fname in self.extra_functions:
                return
            raise ReadOnlyViolation(f"refused: function {fname}() is not allowed")
        if name in ALLOWED_FUNCTIONS and name != "Anonymous":
            return
        sql_name = node.sql_name().lower() if hasattr(node, "sql_name") else name
        if sql_name in self.extra_functions or name.lower() in self.extra_functions:
            return
        raise ReadOnlyViolation(f"refused: function {sql_name}() is not allowed")

    def _tables(self, tree: exp.Expression) -> frozenset[str]:
        ctes = {_normalise_name(c.alias) for c in tree.find_all(exp.CTE) if c.alias}
        names: set[str] = set()
        for table in tree.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # table-valued function: checked as a function above
            name = _normalise_name(table.name)
            db = _normalise_name(table.db) if table.db else ""
            if not db and name in ctes:
                continue
            full = f"{db}.{name}" if db else name
            names.add(full)
            if self.allowed_tables is not None and not (
                name in self.allowed_tables or full in self.allowed_tables
            ):
                raise ReadOnlyViolation(
                    f"refused: table {full} is not in the allow-list"
                )
        return frozenset(names)


def check_select(
    sql: str,
    dialect: str | None = None,
    *,
    allowed_tables: Iterable[str] | None = None,
) -> GuardedStatement:
    """Return the guarded statement for ``sql``; raise ReadOnlyViolation."""
    return Guard(dialect, allowed_tables=allowed_tables).check(sql)


def strip_literals(sql: str, dialect: str | None = None) -> str:
    """Return ``sql`` with every literal replaced by ``?`` (for query logs)."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:
        return "<unparseable statement>"

    def _strip(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Literal):
            return exp.Placeholder()
        return node

    return tree.transform(_strip).sql(dialect=dialect, comments=False)
