"""Load candle files in the shared schema and make one market's bars regular."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REQUIRED_COLUMNS: tuple[str, ...] = ("market", "ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
LIVE_COLUMNS: tuple[str, ...] = ("trade_intensity", "spread_bps")
"""Per-bar values only a live feed has (``lxa record`` writes them with each bar; candle files
lack them). ``load_candles`` carries them when a file has them; missing is NaN, never 0."""
NEWS_COLUMNS: tuple[str, ...] = ("news_sentiment", "news_count")
"""Per-bar news values, never in a candle file: the coin's sentiment index at the bar's close
and the items counted in it (``news.index.SentimentReading``). Live, the engine reads them at
each bar close; for training, ``app.news_features`` puts them on the candles from a journal,
point in time. ``regularize`` carries them (NaN on filled bars); missing is NaN, never 0."""
_LIVE_BOUNDS = {"trade_intensity": (-1.0, 1.0), "spread_bps": (0.0, math.inf)}
_RECORDED_BARS = "bars"  # the folder of closed bars under an `lxa record` folder
BAR = pd.Timedelta(minutes=1)
SEGMENT_GAP = pd.Timedelta(minutes=30)


class CandleFileError(ValueError):
    """A candle file cannot be used: unreadable, not Parquet, a missing column or a bad value.

    The message is one line naming the file, and the market and column where one is at fault.
    Raised before anything is built on the candles, so a caller that stops on it wrote nothing.
    """


def load_candles(paths: Sequence[str | Path], markets: Sequence[str] | None = None) -> pd.DataFrame:
    """Read candle parquet files into one frame sorted by market and ts.

    Returns columns market, ts (UTC), open, high, low, close, volume; a (market, ts) seen in
    more than one file is kept once (the first file listed wins). A folder stands for every
    parquet file under it; a folder written by ``lxa record`` stands for its recorded bars
    (``bars/``), whose market comes from the ``market=`` folder. When any file has the
    ``LIVE_COLUMNS`` (recorded bars do), the frame has them too, NaN for rows of files without.

    Every file is checked as it is read: one that is empty, not Parquet or lacks a column, or
    holds a missing time or market, a NaN or infinite price or volume, a price <= 0 or a
    negative volume (in the markets kept) raises `CandleFileError` naming the file, and the
    market and column; a path that does not exist raises FileNotFoundError naming it.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.exists():
            raise FileNotFoundError(f"candles file {path}: not found")
        if path.is_dir():  # a folder of part files, as `lxa download` and `lxa record` write
            if (path / _RECORDED_BARS).is_dir():
                path = path / _RECORDED_BARS
            found = sorted(p for p in path.glob("**/*.parquet") if not p.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"candles folder {path}: no parquet files under it")
            files.extend(found)
        else:
            files.append(path)
    frames: list[pd.DataFrame] = []
    live_seen = False
    for path in files:
        present = set(_parquet_schema(path).names)
        partition_market = _partition_market(path) if "market" not in present else None
        for column in REQUIRED_COLUMNS:
            if column not in present and not (column == "market" and partition_market):
                raise CandleFileError(f"candles file {path} lacks required column {column!r}")
        live = [c for c in LIVE_COLUMNS if c in present]
        live_seen = live_seen or bool(live)
        wanted = [c for c in REQUIRED_COLUMNS if c in present] + live
        frame = _read_parquet(path, wanted)
        if partition_market is not None:
            frame.insert(0, "market", partition_market)
        if markets is not None:
            frame = frame[frame["market"].isin(list(markets))]
        frame = _normalize(frame, path)
        _check_values(frame, path)
        frames.append(frame)
    if not frames:
        return _empty()
    if live_seen:
        frames = [f if LIVE_COLUMNS[0] in f.columns else _with_missing_live(f) for f in frames]
    candles = pd.concat(frames, ignore_index=True)
    candles = candles.drop_duplicates(subset=["market", "ts"], keep="first")
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    return candles


def _arrow_reason(exc: BaseException) -> str:
    """Arrow's (or the OS's) reason as one line: its first sentence, without a trailing dot."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.split(". ", 1)[0].rstrip(".")


def _parquet_schema(path: Path) -> pa.Schema:
    """The file's Parquet schema, or `CandleFileError` saying why the file cannot be read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CandleFileError(
            f"candles file {path}: cannot be read ({_arrow_reason(exc)})"
        ) from exc
    if size == 0:
        raise CandleFileError(f"candles file {path}: the file is empty (0 bytes)")
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise CandleFileError(
            f"candles file {path}: not a Parquet file ({_arrow_reason(exc)})"
        ) from exc


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read `columns` of a file whose schema was read; a damaged body is a `CandleFileError`."""
    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise CandleFileError(
            f"candles file {path}: damaged Parquet data ({_arrow_reason(exc)})"
        ) from exc


def _partition_market(path: Path) -> str | None:
    """Return the market named by a ``market=...`` folder above ``path`` (hive layout)."""
    for parent in path.parents:
        if parent.name.startswith("market=") and len(parent.name) > len("market="):
            return parent.name[len("market=") :]
    return None


def _with_missing_live(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with NaN ``LIVE_COLUMNS`` (a candle file beside recorded bars)."""
    return frame.assign(**{column: np.nan for column in LIVE_COLUMNS})


def _empty() -> pd.DataFrame:
    """Return an empty candle frame with the output columns and dtypes."""
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in REQUIRED_COLUMNS})
    frame["market"] = frame["market"].astype(str)
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def _normalize(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Coerce dtypes: market as str, ts as UTC nanoseconds, prices as float64.

    Live columns, where the file has any, become float64 with null as NaN (every live column
    then present); a value outside its range (trade intensity in [-1, 1], spread >= 0) or
    infinite is an error naming the file and the column.
    """
    frame = frame.copy()
    ts = frame["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(ts.dtype):
            raise CandleFileError(
                f"candles file {path}: column 'ts' is not timezone-aware (want UTC)"
            )
        raise CandleFileError(f"candles file {path}: column 'ts' is {ts.dtype}, not a timestamp")
    frame["ts"] = ts.dt.tz_convert("UTC").dt.as_unit("ns")
    if frame["market"].isna().any():
        count = int(frame["market"].isna().sum())
        raise CandleFileError(
            f"candles file {path}, column market: {_count(count, 'missing value')}"
        )
    frame["market"] = frame["market"].astype(str)
    for column in PRICE_COLUMNS:
        try:
            frame[column] = frame[column].astype("float64")
        except (TypeError, ValueError):
            raise CandleFileError(
                f"candles file {path}: column {column!r} is {frame[column].dtype}, not numeric"
            ) from None
    if not any(column in frame.columns for column in LIVE_COLUMNS):
        return frame[list(REQUIRED_COLUMNS)]
    for column in LIVE_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
            continue
        try:
            values = pd.to_numeric(frame[column], errors="raise").astype("float64")
        except (TypeError, ValueError):
            raise CandleFileError(
                f"candles file {path}: column {column!r} is not numeric"
            ) from None
        low, high = _LIVE_BOUNDS[column]
        known = values.dropna()
        if not known.between(low, high).all():
            bad = known[~known.between(low, high)].iloc[0]
            raise CandleFileError(
                f"candles file {path}: column {column!r} has {bad!r}, outside [{low}, {high}]"
            )
        if np.isinf(known).any():
            raise CandleFileError(f"candles file {path}: column {column!r} has an infinite value")
        frame[column] = values
    return frame[[*REQUIRED_COLUMNS, *LIVE_COLUMNS]]


_PLURALS = {"value <= 0": "values <= 0"}


def _count(count: int, noun: str) -> str:
    """`1 NaN value`, `3 NaN values`."""
    return f"{count} {noun if count == 1 else _PLURALS.get(noun, noun + 's')}"


def _check_values(frame: pd.DataFrame, path: Path) -> None:
    """Refuse a missing time, or a missing, infinite or impossible price or volume.

    Prices (open, high, low, close) must be above 0 and volume at least 0. The error names the
    file, the market, the column and how many rows of that market are bad, from when.
    """
    if frame.empty:
        return
    missing_ts = frame["ts"].isna().to_numpy()
    if missing_ts.any():
        raise CandleFileError(_bad_rows(path, frame, missing_ts, "ts", "missing timestamp"))
    for column in PRICE_COLUMNS:
        values = frame[column].to_numpy(dtype="float64")
        nan = np.isnan(values)
        infinite = np.isinf(values)
        with np.errstate(invalid="ignore"):
            impossible = values < 0 if column == "volume" else values <= 0
        for bad, noun in (
            (nan, "NaN value"),
            (infinite, "infinite value"),
            (impossible, "negative value" if column == "volume" else "value <= 0"),
        ):
            if bad.any():
                raise CandleFileError(_bad_rows(path, frame, bad, column, noun))


def _bad_rows(path: Path, frame: pd.DataFrame, bad: np.ndarray, column: str, noun: str) -> str:
    """One line naming the file, the market with the earliest bad row, the column and count."""
    rows = frame.loc[bad]
    if column == "ts":
        market = str(rows["market"].iloc[0])
        first = f"first at row {int(np.flatnonzero(bad)[0])}"
    else:
        earliest = rows.sort_values("ts", kind="stable").iloc[0]
        market = str(earliest["market"])
        first = f"first at {earliest['ts']:%Y-%m-%d %H:%M} UTC"
    count = int((rows["market"] == market).sum())
    others = sorted(set(map(str, rows["market"])) - {market})
    also = f"; also in {', '.join(others)}" if others else ""
    return (
        f"candles file {path}, market {market}, column {column}: "
        f"{_count(count, noun)} ({first}){also}"
    )


def regularize(
    frame_one_market: pd.DataFrame,
    bar: pd.Timedelta = BAR,
    max_gap: pd.Timedelta = SEGMENT_GAP,
) -> pd.DataFrame:
    """Split one market's bars into gap-free segments and fill quiet bars inside each.

    A jump in time larger than ``max_gap`` starts a new segment (int column ``segment``).
    Inside a segment, a missing bar is a quiet one (Upbit sends no candle when nothing
    traded): it becomes a flat bar at the previous close with volume 0 and ``filled`` True.
    ``LIVE_COLUMNS`` and ``NEWS_COLUMNS`` in the input are kept, NaN on filled bars (nothing
    traded, no spread seen; live, the engine reads the news only at a real bar's close).
    """
    for column in ("ts", "open", "high", "low", "close", "volume"):
        if column not in frame_one_market.columns:
            raise ValueError(f"regularize needs column {column!r}")
    bar = pd.Timedelta(bar)
    max_gap = pd.Timedelta(max_gap)
    if bar <= pd.Timedelta(0):
        raise ValueError(f"bar must be positive, got {bar}")
    if max_gap < bar:
        raise ValueError(f"max_gap ({max_gap}) must be at least one bar ({bar})")
    market: str | None = None
    if "market" in frame_one_market.columns:
        names = pd.unique(frame_one_market["market"])
        if len(names) > 1:
            raise ValueError(f"regularize takes one market, got {sorted(map(str, names))}")
        market = str(names[0]) if len(names) == 1 else None

    frame = frame_one_market.sort_values("ts", kind="stable").drop_duplicates("ts", keep="first")
    ts = pd.DatetimeIndex(frame["ts"])
    if ts.tz is None:
        raise ValueError("regularize needs timezone-aware 'ts' (UTC)")
    ts = ts.tz_convert("UTC").as_unit("ns")
    live_columns = [c for c in (*LIVE_COLUMNS, *NEWS_COLUMNS) if c in frame.columns]
    values = {
        column: frame[column].to_numpy(dtype="float64")
        for column in (*PRICE_COLUMNS, *live_columns)
    }

    ts_ns = ts.asi8
    bar_ns = bar.value
    if len(ts_ns) == 0:
        out = pd.DataFrame(
            {"ts": pd.DatetimeIndex([], tz="UTC").as_unit("ns")}
            | {column: np.empty(0) for column in (*PRICE_COLUMNS, *live_columns)}
        )
        out["segment"] = np.empty(0, dtype="int64")
        out["filled"] = np.empty(0, dtype=bool)
        if market is not None:
            out.insert(0, "market", pd.Series([], dtype=str))
        return out

    jumps = np.diff(ts_ns) > max_gap.value
    starts = np.flatnonzero(np.concatenate([[True], jumps]))
    ends = np.concatenate([starts[1:], [len(ts_ns)]])

    pieces: list[pd.DataFrame] = []
    for segment, (start, end) in enumerate(zip(starts, ends, strict=True)):
        seg_ts = ts_ns[start:end]
        offsets = seg_ts - seg_ts[0]
        if np.any(offsets % bar_ns):
            bad = seg_ts[np.flatnonzero(offsets % bar_ns)[0]]
            raise ValueError(
                f"bar at {pd.Timestamp(bad, tz='UTC')} is off the {bar} grid of its segment"
            )
        steps = offsets // bar_ns
        length = int(steps[-1]) + 1
        close = np.full(length, np.nan)
        close[steps] = values["close"][start:end]
        have = np.zeros(length, dtype=bool)
        have[steps] = True
        # Forward-fill the close over quiet bars.
        last_seen = np.maximum.accumulate(np.where(have, np.arange(length), 0))
        close = close[last_seen]
        columns: dict[str, np.ndarray] = {}
        for column in ("open", "high", "low"):
            filled = close.copy()
            filled[steps] = values[column][start:end]
            columns[column] = filled
        volume = np.zeros(length)
        volume[steps] = values["volume"][start:end]
        piece = pd.DataFrame(
            {
                "ts": pd.DatetimeIndex(seg_ts[0] + np.arange(length) * bar_ns, tz="UTC"),
                "open": columns["open"],
                "high": columns["high"],
                "low": columns["low"],
                "close": close,
                "volume": volume,
            }
        )
        for column in live_columns:
            live = np.full(length, np.nan)
            live[steps] = values[column][start:end]
            piece[column] = live
        piece["segment"] = np.int64(segment)
        piece["filled"] = ~have
        pieces.append(piece)
    out = pd.concat(pieces, ignore_index=True)
    out["ts"] = out["ts"].dt.as_unit("ns")
    if market is not None:
        out.insert(0, "market", market)
    return out
