"""Load candle files in the shared schema and make one market's bars regular."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REQUIRED_COLUMNS: tuple[str, ...] = ("market", "ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
BAR = pd.Timedelta(minutes=1)
SEGMENT_GAP = pd.Timedelta(minutes=30)


def load_candles(paths: Sequence[str | Path], markets: Sequence[str] | None = None) -> pd.DataFrame:
    """Read candle parquet files into one frame sorted by market and ts.

    Returns columns market, ts (UTC), open, high, low, close, volume; a (market, ts) seen in
    more than one file is kept once (the first file listed wins). A folder stands for every
    parquet file under it.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.exists():
            raise FileNotFoundError(f"candle file not found: {path}")
        if path.is_dir():  # a folder of part files, as `lxa download` writes them
            found = sorted(path.glob("**/*.parquet"))
            if not found:
                raise FileNotFoundError(f"no parquet files under {path}")
            files.extend(found)
        else:
            files.append(path)
    frames: list[pd.DataFrame] = []
    for path in files:
        present = set(pq.read_schema(path).names)
        for column in REQUIRED_COLUMNS:
            if column not in present:
                raise ValueError(f"candle file {path} lacks required column {column!r}")
        frame = pd.read_parquet(path, columns=list(REQUIRED_COLUMNS))
        if markets is not None:
            frame = frame[frame["market"].isin(list(markets))]
        frame = _normalize(frame, path)
        frames.append(frame)
    if not frames:
        return _empty()
    candles = pd.concat(frames, ignore_index=True)
    candles = candles.drop_duplicates(subset=["market", "ts"], keep="first")
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    return candles


def _empty() -> pd.DataFrame:
    """Return an empty candle frame with the output columns and dtypes."""
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in REQUIRED_COLUMNS})
    frame["market"] = frame["market"].astype(str)
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def _normalize(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Coerce dtypes: market as str, ts as UTC nanoseconds, prices as float64."""
    frame = frame.copy()
    ts = frame["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(ts.dtype):
            raise ValueError(f"candle file {path}: column 'ts' is not timezone-aware (want UTC)")
        raise ValueError(f"candle file {path}: column 'ts' is {ts.dtype}, not a timestamp")
    frame["ts"] = ts.dt.tz_convert("UTC").dt.as_unit("ns")
    frame["market"] = frame["market"].astype(str)
    for column in PRICE_COLUMNS:
        frame[column] = frame[column].astype("float64")
    return frame[list(REQUIRED_COLUMNS)]


def regularize(
    frame_one_market: pd.DataFrame,
    bar: pd.Timedelta = BAR,
    max_gap: pd.Timedelta = SEGMENT_GAP,
) -> pd.DataFrame:
    """Split one market's bars into gap-free segments and fill quiet bars inside each.

    A jump in time larger than ``max_gap`` starts a new segment (int column ``segment``).
    Inside a segment, a missing bar is a quiet one (Upbit sends no candle when nothing
    traded): it becomes a flat bar at the previous close with volume 0 and ``filled`` True.
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
    values = {column: frame[column].to_numpy(dtype="float64") for column in PRICE_COLUMNS}

    ts_ns = ts.asi8
    bar_ns = bar.value
    if len(ts_ns) == 0:
        out = pd.DataFrame(
            {"ts": pd.DatetimeIndex([], tz="UTC").as_unit("ns")}
            | {column: np.empty(0) for column in PRICE_COLUMNS}
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
        piece["segment"] = np.int64(segment)
        piece["filled"] = ~have
        pieces.append(piece)
    out = pd.concat(pieces, ignore_index=True)
    out["ts"] = out["ts"].dt.as_unit("ns")
    if market is not None:
        out.insert(0, "market", market)
    return out
