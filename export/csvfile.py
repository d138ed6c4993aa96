"""Writing the Chargeback table as `Chargeback_<first>_<last>_<Tab>.csv` (PRODUCT.md §6)."""

import csv
import io
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path

from chargeback.errors import ChargebackError
from export.table import ChargebackTable, Value


def file_name(table: ChargebackTable) -> str:
    period = table.period
    return (
        f"Chargeback_{period.first.isoformat()}_{period.last.isoformat()}_{table.tab.file_word}.csv"
    )


def format_value(value: Value) -> str:
    """Bytes as integers; money with two places, '.' as separator, no symbol or grouping."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def render_csv(table: ChargebackTable) -> str:
    """The file's whole text: the header, then one line per row as the table orders them.

    The cells come as text from the query (numbers: never quoted); only the name may need
    quoting, which csv.writer does for names that are not plain."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.header)
    for row in table.rows:
        name = spreadsheet_safe(row.service_account)
        if _PLAIN.fullmatch(name) is None:
            writer.writerow([name, *row.text.split(","), format_value(row.total)])
        else:
            out.write(f"{name},{row.text},{format_value(row.total)}\n")
    return out.getvalue()


def spreadsheet_safe(name: str) -> str:
    """The name as the CSV shows it: one a spreadsheet would take for a formula gets a leading '.

    Account names come from whoever produces usage events; finance opens the file in a
    spreadsheet, which evaluates a cell starting with =, +, -, @, a tab or a carriage return.
    """
    return "'" + name if name[:1] in _FORMULA_STARTS else name


_FORMULA_STARTS = frozenset("=+-@\t\r")
# A field csv.writer (QUOTE_MINIMAL) writes as it is: no delimiter, quote or line break in it.
_PLAIN = re.compile(r'[^,"\r\n]+')


def write_csv(table: ChargebackTable, folder: Path) -> Path:
    """Write the file atomically: aside in the same folder, then renamed into place."""
    target = folder / file_name(table)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as error:
        raise ChargebackError(f"cannot write to {folder}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(render_csv(table))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staging, 0o644)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return target
