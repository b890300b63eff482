"""Reading, validating and writing stores, and their dense in-memory form.

`open_store(path)` reads a store folder, validates it (every problem is one `StoreError`
line that names the file), and converts it once into dense NumPy arrays (`replay/arrays.py`:
answers interned into integer ids, samples sorted into pools (question, stage, model, upstream
context) with CSR offsets). The kernels only ever see these arrays. What the engine derives
from them lives in `store.derived` (`replay/derived.py`), built on first use.

`write_store(path, manifest, ...)` writes atomically: everything goes to a temporary folder
beside the target, is read back and validated, and only then renamed into place, so an
existing store is never left half-written.

Integrity: tables are written with Parquet page checksums (CRC32 of every data page, checked on
read), and the manifest records a SHA-256 of every table and of the manifest itself
(`checksums`), checked on open before a table is parsed: a flipped byte anywhere in a table
(data, page headers or footer) or a changed value in the manifest is a `StoreError`, never a
changed result. A store written before checksums (no `checksums` in its manifest) opens as
before, unverified; `seal(path)` (`replay seal STORE`) validates it and adds them, and is also
how a deliberate edit of a sealed store is accepted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .arrays import StoreArrays, build_arrays, question_hash
from .atomic import atomic_path, make_parent, pid_alive, remove_stale_temps, temp_prefix
from .derived import Derived
from .errors import ConfigError, InputError, StoreError

__all__ = ["Store", "open_store", "read_manifest", "write_store", "seal", "check_store_name", "StoreArrays",
           "question_hash"]

CHECKSUMS = "checksums"  # manifest field: file name -> "sha256:HEX" (module docstring)
MAX_PARAMS = 1e16  # parameter counts above this are an error, not a model (FLOPs would overflow sums)
MAX_NAME = 200


# --------------------------------------------------------------------------------------------
# Names that become paths


def check_store_name(name, where: str = "name", *, error=ConfigError) -> str:
    """A store's name is used as one folder name under an output (search, sweep): one safe path
    component. Refused: empty, '.', '..', a leading '.' or '-', a path separator, a control character
    (NUL, newline), more than 200 characters."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty"
    elif name in (".", "..") or name.startswith("."):
        problem = "starts with '.'"
    elif name.startswith("-"):  # read as an option by the shell tools a user runs on the folder (rm -rf)
        problem = "starts with '-'"
    elif "/" in name or "\\" in name:
        problem = "holds a path separator"
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        problem = "holds a control character"
    elif name != name.strip():
        problem = "starts or ends with a space"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    if problem:
        raise error(where, f"name {str(name)[:60]!r} {problem}: a store's name is used as a folder name, so it must "
                    "be one plain path component (letters, digits, '-', '_', '.')")
    return name


# --------------------------------------------------------------------------------------------
# Manifest


def _manifest_from_json(path: Path, raw: Any) -> S.Manifest:
    where = str(path)
    if not isinstance(raw, dict):
        raise StoreError(where, "the manifest must be a JSON object")
    if raw.get("format", S.FORMAT_NAME) != S.FORMAT_NAME:
        raise StoreError(where, f"format is {raw.get('format')!r}, expected {S.FORMAT_NAME!r}")
    version = raw.get("format_version")
    if isinstance(version, bool) or version not in S.READABLE_VERSIONS:
        raise StoreError(where, f"format_version is {version!r}; this tool reads versions "
                                f"{', '.join(map(str, S.READABLE_VERSIONS))}")
    kind = raw.get("kind", "chain") if version >= 2 else "chain"  # version 1 knows only chains
    if kind not in S.STORE_KINDS:
        raise StoreError(where, f"kind is {kind!r}; expected one of {', '.join(S.STORE_KINDS)}")
    for key, typ in (("name", str), ("synthetic", bool), ("stages", list), ("models", list)):
        if key not in raw:
            raise StoreError(where, f"missing field {key!r}")
        if not isinstance(raw[key], typ):
            raise StoreError(where, f"field {key!r} must be a {typ.__name__}, got {type(raw[key]).__name__}")
    check_store_name(raw["name"], where, error=StoreError)
    if not raw["stages"]:
        raise StoreError(where, "no stages")
    if not raw["models"]:
        raise StoreError(where, "no models")
    models = []
    for i, m in enumerate(raw["models"]):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise StoreError(where, f"models[{i}] needs a string 'name'")
        params = m.get("params")
        if not isinstance(params, (int, float)) or isinstance(params, bool) or not params > 0:
            raise StoreError(where, f"model {m['name']!r} needs a positive number 'params' (parameter count), "
                             f"got {params!r}")
        if not (math.isfinite(params) and params <= MAX_PARAMS):
            raise StoreError(where, f"model {m['name']!r}: params {params!r} is not a finite parameter count "
                             f"(at most {MAX_PARAMS:g})")
        speeds = [_throughput(where, m, k) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")]
        models.append(S.Model(name=m["name"], params=float(params), description=str(m.get("description", "")),
                              prefill_tokens_per_s=speeds[0], decode_tokens_per_s=speeds[1]))
    model_names = [m.name for m in models]
    if len(set(model_names)) != len(model_names):
        raise StoreError(where, "duplicate model names")
    stages = []
    for i, st in enumerate(raw["stages"]):
        if not isinstance(st, dict) or not isinstance(st.get("name"), str) or not st["name"]:
            raise StoreError(where, f"stages[{i}] needs a non-empty string 'name'")
        agg = st.get("aggregation", "majority_vote")
        if agg not in S.AGGREGATIONS:
            raise StoreError(where, f"stage {st['name']!r}: unknown aggregation {agg!r} (known: {', '.join(S.AGGREGATIONS)})")
        dependency = st.get("dependency", "conditional")
        if dependency not in S.DEPENDENCIES:
            raise StoreError(where, f"stage {st['name']!r}: unknown dependency {dependency!r} (known: {', '.join(S.DEPENDENCIES)})")
        cand = tuple(st.get("models") or ())
        unknown = [m for m in cand if m not in model_names]
        if unknown:
            raise StoreError(where, f"stage {st['name']!r} names unknown model {unknown[0]!r}")
        stages.append(
            S.Stage(
                name=st["name"],
                aggregation=agg,
                scorer=str(st.get("scorer", "exact_match")),
                models=cand,
                description=str(st.get("description", "")),
                dependency=dependency,
            )
        )
    stage_names = [s.name for s in stages]
    if len(set(stage_names)) != len(stage_names):
        raise StoreError(where, "duplicate stage names")
    if kind == "graph":
        from .graph.keys import check_graph_roles

        check_graph_roles(where, stage_names)
    probe = raw.get("probe_interval")
    if probe is not None and (not isinstance(probe, int) or isinstance(probe, bool) or probe <= 0):
        raise StoreError(where, "probe_interval must be a positive integer or null")
    if not isinstance(raw.get("provenance") or {}, dict):
        raise StoreError(where, "provenance must be a JSON object")
    split = raw.get("split") or {}
    if not isinstance(split, dict) or any(not isinstance(v, list) for v in split.values()):
        raise StoreError(where, "split must map a split name to a list of question ids")
    rule = raw.get("score_rule", "last")
    if rule not in S.SCORE_RULES:
        raise StoreError(where, f"unknown score_rule {rule!r} (known: {', '.join(S.SCORE_RULES)})")
    for k, v in split.items():
        ids = [str(x) for x in v]
        if len(set(ids)) != len(ids):
            dup = next(x for x in ids if ids.count(x) > 1)
            raise StoreError(where, f"split {k!r} lists question {dup!r} twice")
    return S.Manifest(
        name=raw["name"],
        stages=tuple(stages),
        models=tuple(models),
        synthetic=raw["synthetic"],
        provenance=dict(raw.get("provenance") or {}),
        probe_interval=probe,
        split={k: tuple(str(x) for x in v) for k, v in split.items()},
        score_rule=rule,
        format_version=version,
        kind=kind,
    )


def _throughput(where: str, model: dict, key: str) -> float | None:
    """A model's prefill or decode throughput (tokens/s), absent or null where unknown."""
    v = model.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and math.isfinite(v)):
        # Infinity would make every latency of the model 0 s, silently
        raise StoreError(where, f"model {model['name']!r}: {key} must be a positive number or null, got {v!r} "
                         "(a finite number of tokens per second)")
    return float(v)


def _read_manifest_raw(store: Path) -> tuple[Path, bytes, Any]:
    path = store / S.MANIFEST
    if not store.is_dir():
        problem = "not a store folder (no such directory)" if not store.exists() else "not a store folder (a file)"
        old = sorted(store.parent.glob(f".{store.name}.old-*")) if not store.exists() else []
        if old:  # write_store was killed between its two renames
            problem += f"; an interrupted write left the previous store at {old[0]}: rename it back to {store.name}"
        raise StoreError(store, problem)
    if not path.is_file():
        raise StoreError(path, "missing file: a store needs a manifest.json")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StoreError(path, f"cannot read it ({e.strerror})") from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(path, f"not valid JSON ({e})") from None
    except RecursionError:
        raise StoreError(path, "not a manifest: JSON nested too deeply") from None
    return path, data, raw


def read_manifest(store: str | os.PathLike) -> S.Manifest:
    path, _, raw = _read_manifest_raw(Path(store))
    return _manifest_from_json(path, raw)


# --------------------------------------------------------------------------------------------
# Checksums


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _manifest_sha256(raw: dict) -> str:
    """The manifest's own hash: its canonical JSON without the checksums (whitespace and key
    order do not matter; every value does)."""
    body = {k: v for k, v in raw.items() if k != CHECKSUMS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tables_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.parquet") if p.is_file())


def _checksums(folder: Path, raw: dict) -> dict[str, str]:
    out = {S.MANIFEST: _manifest_sha256(raw)}
    out.update({name: _file_sha256(folder / name) for name in _tables_in(folder)})
    return out


def _verify_checksums(store: Path, raw: dict) -> bool:
    """Check a sealed store's files against its manifest (False: not sealed, nothing checked)."""
    where = store / S.MANIFEST
    sums = raw.get(CHECKSUMS)
    if sums is None:
        return False
    if not isinstance(sums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
        raise StoreError(where, f"field {CHECKSUMS!r} must map file names to 'sha256:HEX'")
    hint = f"corrupted, or changed after the store was written (if the change was deliberate: replay seal {store})"
    if sums.get(S.MANIFEST) != _manifest_sha256(raw):
        raise StoreError(where, f"its content does not match its own checksum: {hint}")
    for name in _tables_in(store):
        if name not in sums:
            raise StoreError(store / name, f"not covered by the checksums in manifest.json: {hint}")
    for name, want in sums.items():
        if name == S.MANIFEST:
            continue
        if "/" in name or name.startswith("."):
            raise StoreError(where, f"checksums name {name!r}, which is not a file of the store")
        f = store / name
        if not f.is_file():
            raise StoreError(f, "missing file (the manifest's checksums list it)")
        if _file_sha256(f) != want:
            raise StoreError(f, f"content does not match its checksum in manifest.json: {hint}")
    return True


# --------------------------------------------------------------------------------------------
# Tables


def _read_table(store: Path, name: str, required: bool = True) -> pl.DataFrame | None:
    path = store / name
    if not path.is_file():
        if required:
            raise StoreError(path, "missing file")
        return None
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        raise StoreError(path, f"cannot read Parquet (truncated or corrupt?): {' '.join(str(e).split())}") from None
    try:
        table.validate(full=True)  # invalid UTF-8 in a string column, offsets out of bounds, ...
    except pa.ArrowException as e:
        raise StoreError(path, f"invalid data: {' '.join(str(e).split())}") from None
    columns = S.TABLE_SCHEMAS[name]
    for col, (typ, req) in columns.items():
        if col not in table.column_names:
            if req:
                raise StoreError(path, f"missing column {col!r}")
            continue
        got = table.schema.field(col).type
        ok = got == typ or (pa.types.is_integer(typ) and pa.types.is_integer(got))
        ok = ok or (pa.types.is_string(typ) and pa.types.is_large_string(got))
        ok = ok or (pa.types.is_floating(typ) and (pa.types.is_floating(got) or pa.types.is_integer(got)))
        if pa.types.is_list(typ) and (pa.types.is_list(got) or pa.types.is_large_list(got)):
            inner = got.value_type
            ok = inner == typ.value_type or (pa.types.is_integer(typ.value_type) and pa.types.is_integer(inner))
            ok = ok or (pa.types.is_string(typ.value_type) and pa.types.is_large_string(inner))
        if not ok:
            raise StoreError(path, f"column {col!r} has type {got}, expected {typ}")
        if req and table.column(col).null_count:
            raise StoreError(path, f"column {col!r} has {table.column(col).null_count} null values")
        if got != typ and (pa.types.is_integer(typ) or pa.types.is_list(typ) and pa.types.is_integer(typ.value_type)):
            # any integer width is accepted, but a value must fit the store's type: a uint64
            # token count above 2^63 must not become a negative int64
            try:
                cast = table.column(col).cast(typ, safe=True)
            except pa.ArrowException:
                raise StoreError(path, f"column {col!r} ({got}) has values out of range for {typ}") from None
            table = table.set_column(table.column_names.index(col), pa.field(col, typ), cast)
    return pl.from_arrow(table.select([c for c in columns if c in table.column_names]))


def _write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """A table with a CRC32 in every data page (checked on every read)."""
    with atomic_path(path) as tmp:
        pq.write_table(df.to_arrow(), tmp, compression="zstd", compression_level=9, write_statistics=True,
                       write_page_checksum=True)


def _coerce(df: pl.DataFrame | dict, name: str) -> pl.DataFrame:
    """Cast a user-provided table to the store's column types (raises on a missing column)."""
    if not isinstance(df, pl.DataFrame):
        df = pl.DataFrame(df)
    casts = {}
    for col, (typ, req) in S.TABLE_SCHEMAS[name].items():
        if col not in df.columns:
            if req:
                raise StoreError(name, f"missing column {col!r}")
            continue
        casts[col] = pl.from_arrow(pa.array([], type=typ)).dtype
    return df.select([pl.col(c).cast(t) for c, t in casts.items()])


def _publish_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make private files; a published store is readable like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)


def write_store(
    path: str | os.PathLike,
    manifest: S.Manifest,
    questions: pl.DataFrame | dict,
    samples: pl.DataFrame | dict,
    *,
    fusions: pl.DataFrame | dict | None = None,
    stage_golds: pl.DataFrame | dict | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a store atomically and return its path. The result is validated before it lands.

    Everything goes to a temporary folder beside `path`, is read back and validated like
    `open_store` does, and only then renamed into place: a failed write leaves an existing
    store as it was.

    Args:
        path: the store folder to write.
        manifest: what the store is (stages, models, split, provenance).
        questions: the questions table (columns of `schema.QUESTIONS_SCHEMA`).
        samples: the samples table (columns of `schema.SAMPLES_SCHEMA`).
        fusions: the stored fusions, required iff a stage aggregates by `llm_fuse`.
        stage_golds: gold answers of intermediate stages, optional.
        extra_files: more files to write into the folder, name -> text (e.g. a README.md).
        overwrite: replace an existing store at `path`; if False, an existing one is an error.

    Raises:
        StoreError: a table misses a column, what was written does not validate, or `path`
            exists and `overwrite` is False.
    """
    path = Path(path)
    check_store_name(manifest.name, "manifest name", error=StoreError)
    if path.exists() and not overwrite:
        raise StoreError(path, "already exists (use --force to replace it)")
    if path.exists() and not path.is_dir():
        raise StoreError(path, "is a file, not a store folder: not replaced")
    make_parent(path)
    _remove_stale(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise InputError(str(path), f"cannot write in {path.parent} ({e.strerror})") from None
    try:
        _write_parquet_atomic(_coerce(questions, S.QUESTIONS), tmp / S.QUESTIONS)
        _write_parquet_atomic(
            _coerce(samples, S.SAMPLES).sort(["question_id", "stage", "model", "context", "sample_index"]),
            tmp / S.SAMPLES,
        )
        if fusions is not None:
            _write_parquet_atomic(_coerce(fusions, S.FUSIONS), tmp / S.FUSIONS)
        if stage_golds is not None:
            _write_parquet_atomic(_coerce(stage_golds, S.STAGE_GOLDS), tmp / S.STAGE_GOLDS)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        raw = json.loads(json.dumps(manifest.to_json()))  # exactly what a reader will parse (and hash)
        raw[CHECKSUMS] = _checksums(tmp, raw)  # last: it covers every table written above
        (tmp / S.MANIFEST).write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n")
        try:
            open_store(tmp)  # validate what we wrote (checksums too) before it replaces anything
        except StoreError as e:  # named as the store it would have been, not the temporary folder
            raise StoreError(e.where.replace(str(tmp), str(path)), e.problem) from None
        _publish_permissions(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(str(path), f"cannot write the store ({e.strerror or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _remove_stale(path: Path) -> None:
    """What killed writes of `path` left: temporary folders of dead processes (atomic.py), and a
    previous store parked by a write killed between its two renames (restored if `path` is gone,
    so that nothing is lost; removed once `path` is back)."""
    remove_stale_temps(path)
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        try:
            pid = int(old.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        if not path.exists():
            os.replace(old, path)
        else:
            shutil.rmtree(old, ignore_errors=True)


def seal(path: str | os.PathLike, *, validate: bool = True) -> Path:
    """Record the checksums of a store's files in its manifest, as they are now.

    For a store written before checksums, or to accept a deliberate edit of a sealed store.
    The manifest is replaced atomically; the tables are not rewritten.

    Args:
        path: the store folder.
        validate: open and validate the store first (its tables, ignoring old checksums), so that
            only a valid store is sealed.

    Raises:
        StoreError: the store does not validate.
    """
    path = Path(path)
    if validate:
        open_store(path, verify=False)
    mpath, _, raw = _read_manifest_raw(path)
    if not isinstance(raw, dict):
        raise StoreError(mpath, "the manifest must be a JSON object")
    raw.pop(CHECKSUMS, None)
    raw[CHECKSUMS] = _checksums(path, raw)
    with atomic_path(mpath) as tmp:
        tmp.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n")
    return path


class Store:
    """A store opened for replay: its manifest, its tables, its dense arrays, and what the
    engine derives from them (`derived`, built on first use).

    Use `replay.open(path)`. Evaluation lives in `replay.engine`; `evaluate` and
    `evaluate_batch` here are conveniences that forward to it.
    """

    def __init__(self, path: Path, manifest: S.Manifest, questions: pl.DataFrame, samples: pl.DataFrame,
                 fusions: pl.DataFrame | None, stage_golds: pl.DataFrame | None):
        self.path = path
        self.manifest = manifest
        self.questions = questions
        self.samples = samples
        self.fusions = fusions
        self.stage_golds = stage_golds
        self.sealed = False  # its files were checked against the manifest's checksums (open_store)
        self.arrays = build_arrays(path, manifest, questions, samples, fusions, stage_golds)
        self.question_ids: tuple[str, ...] = tuple(questions["question_id"].to_list())
        self._qindex = {q: i for i, q in enumerate(self.question_ids)}

    @cached_property
    def derived(self) -> Derived:
        """What the engine derives from the arrays (kernel inputs, pool extremes, budget unit,
        pool means, ...), each figure computed on first use and kept for the store's life."""
        return Derived(self.arrays)

    # ---- naming
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def synthetic(self) -> bool:
        return self.manifest.synthetic

    @property
    def stages(self) -> tuple[S.Stage, ...]:
        return self.manifest.stages

    @property
    def models(self) -> tuple[S.Model, ...]:
        return self.manifest.models

    def stage_index(self, name: str) -> int:
        return self.manifest.stage_names.index(name)

    def model_index(self, name: str) -> int:
        return self.manifest.model_names.index(name)

    def candidate_models(self, stage: int | str) -> tuple[str, ...]:
        """The candidate models of a stage (by index or name), in manifest order."""
        si = stage if isinstance(stage, int) else self.stage_index(stage)
        return tuple(m for mi, m in enumerate(self.manifest.model_names) if self.arrays.stage_model_ok[si, mi])

    def question_indices(self, questions: Any = None) -> np.ndarray:
        """Question selector -> int64 indices.

        Args:
            questions: None or "all" (every question), a split name ("train", "test"), or a
                sequence of question ids and/or integer indices.

        Raises:
            StoreError: an unknown split, question id, or an index out of range.
        """
        if questions is None:
            return np.arange(len(self.question_ids), dtype=np.int64)
        if isinstance(questions, str):
            if questions in self.manifest.split:
                return np.array([self._qindex[q] for q in self.manifest.split[questions]], dtype=np.int64)
            if questions == "all":
                return np.arange(len(self.question_ids), dtype=np.int64)
            raise StoreError(self.path, f"no split named {questions!r} (splits: {', '.join(self.manifest.split) or 'none'})")
        out = []
        if isinstance(questions, (list, tuple)) and len(set(questions)) != len(questions):
            seen = set()
            dup = next(q for q in questions if q in seen or seen.add(q))
            raise ConfigError("questions", f"question {dup!r} is listed twice (it would be counted twice)")
        for q in questions:
            if isinstance(q, (int, np.integer)):
                if not 0 <= q < len(self.question_ids):
                    raise StoreError(self.path, f"question index {q} out of range")
                out.append(int(q))
            else:
                if q not in self._qindex:
                    raise StoreError(self.path, f"unknown question id {q!r}")
                out.append(self._qindex[q])
        return np.array(out, dtype=np.int64)

    @property
    def max_pool_size(self) -> np.ndarray:
        """[S, M]: the smallest pool size over questions and contexts (the largest safe count)."""
        return self.derived.smallest_pool

    def fusion_sizes(self, stage: int) -> tuple[int, ...]:
        """The subset sizes of the stored fusions, for an `llm_fuse` stage; () for any other."""
        a = self.arrays
        if a.stage_agg[stage] != S.AGG_CODES["llm_fuse"]:
            return ()
        return tuple(sorted(set(int(x) for x in a.fus_size)))

    # ---- evaluation, forwarded to the engine (imported here, not at the top: the engine sits
    # above the store, and importing it loads the kernels' module)
    def evaluate(self, config, *, questions=None, replicates: int = 100, seed: int = 0,
                 budget: float | None = None):
        """`replay.engine.evaluate(self, config, ...)`: one configuration's score and cost (for a
        graph store, `replay.graph.evaluate_graph`: the configuration is a graph)."""
        if self.manifest.kind == "graph":  # a graph store's configurations are graphs
            from .graph.engine import evaluate_graph

            return evaluate_graph(self, config, questions=questions, replicates=replicates, seed=seed, budget=budget)
        from .engine import evaluate

        return evaluate(self, config, questions=questions, replicates=replicates, seed=seed, budget=budget)

    def evaluate_batch(self, configs, *, questions=None, replicates: int = 100, seed: int = 0,
                       budget: float | None = None, progress=None, device: str | None = None):
        """`replay.engine.evaluate_batch(self, configs, ...)`: many configurations in few passes
        (device 'cpu', 'cuda', 'auto' or None: `replay.gpu.resolve_device`; for a graph store,
        `replay.graph.evaluate_graphs`)."""
        if self.manifest.kind == "graph":
            from .graph.engine import evaluate_graphs

            return evaluate_graphs(self, configs, questions=questions, replicates=replicates, seed=seed,
                                   budget=budget, progress=progress, device=device)
        from .engine import evaluate_batch

        return evaluate_batch(self, configs, questions=questions, replicates=replicates, seed=seed, budget=budget,
                              progress=progress, device=device)

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        return (f"Store({self.name!r}, {kind}, stages={list(self.manifest.stage_names)}, "
                f"models={list(self.manifest.model_names)}, questions={len(self.question_ids)})")


def open_store(path: str | os.PathLike, *, verify: bool = True) -> Store:
    """Open and validate a store folder, and build its dense arrays.

    Args:
        path: the store folder (manifest.json and Parquet tables; docs/store-format.md).
        verify: check the files against the manifest's checksums, where it has them (`seal`
            turns this off to re-seal a deliberately edited store).

    Raises:
        StoreError: one line naming the file, for the first problem found (a missing file or
            column, a wrong type, a dangling key, an empty pool, a checksum that does not
            match, ...).
    """
    path = Path(path)
    mpath, _, raw = _read_manifest_raw(path)
    manifest = _manifest_from_json(mpath, raw)
    sealed = _verify_checksums(path, raw) if verify else False
    questions = _read_table(path, S.QUESTIONS)
    samples = _read_table(path, S.SAMPLES)
    fusions = _read_table(path, S.FUSIONS, required=False)
    stage_golds = _read_table(path, S.STAGE_GOLDS, required=False)
    bad_split = questions.filter(~pl.col("split").is_in(["train", "test", "dev", "all"]))
    if len(bad_split):
        raise StoreError(path / S.QUESTIONS, f"question {bad_split['question_id'][0]!r} has unknown split {bad_split['split'][0]!r} (train, test, dev or all)")
    store = Store(path, manifest, questions, samples, fusions, stage_golds)
    store.sealed = sealed
    if manifest.kind == "graph":
        from .graph.inputs import check_graph_store

        check_graph_store(store)  # input keys that parse, a solve role with pools
    return store
