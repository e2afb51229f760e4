"""Fitted forecasters saved to a directory with a manifest, loaded to forecast from a new history (a request's).

    save_forecaster(model, "lstm", history, Path("forecaster"))     # after model.fit(history)
    saved = load_forecaster(Path("forecaster"))                      # checks format and hashes
    forecast = saved.forecast(request_history, horizon=21)           # checks frequency, covariates, categories

The directory holds `forecaster.json` (MANIFEST) and the model's files:

    format        "twin.forecaster/1"
    name          the factory name (agents.forecasting.factory), i.e. the model's kind: seasonal_naive,
                  moving_average, ets, arima, croston, tsb, adida, imapa, glm, gradient_boosting, lstm or
                  transformer
    parameters    its constructor's keywords, as set
    frequency     alias, name and season length of the history it was saved with; a history to forecast from
                  must have the same name and season length (the alias's anchor, e.g. the weekday of weekly
                  data, may differ)
    covariates    the known covariates it reads, by name and in order (null: it reads none and accepts any)
    categories    the static categories it reads and, for each, the codes it has seen (null: it reads none)
    levels        the quantile levels it forecasts
    max_horizon   the longest horizon it forecasts (null: any)
    training      the window of the history it was saved with: first and last date, series, periods
    version       the project's version; created: when (UTC)
    files         file name -> sha256 of every other file of the directory
    lstm          (an LSTM; "transformer" for a Transformer) its input normalisation, scaling and the ONNX
                  parity measured at save time

How each kind forecasts from a new history:

- local models (seasonal naive, moving average, ETS, ARIMA, the intermittent ones) fit on the history given:
  that is their nature (one model per series, nothing carried over); the manifest keeps their settings, and they
  are rebuilt from it. glm too, though one model for the panel: it is refitted on the history given (seconds for
  a store's SKUs, 16 s for 500 series of two years), so its series levels are the request's; what it cannot fit
  or forecast (a negative value, a logged covariate <= 0 ahead, covariates not known `horizon` ahead) is a
  SpecError naming the history;
- gradient boosting predicts with its saved fitted regressors (`gradient_boosting.joblib`, the forecaster
  without its training data) on features of the given history (`GradientBoosting.predict_from`);
- the LSTM and the Transformer (NETWORKS: the Transformer is the LSTM's forecaster with another network)
  predict without torch: at save time the network, with the arithmetic of the forecast window (window
  scale, log1p, scaling back: `lstm._Serving`), is exported to ONNX (`lstm.onnx`, `transformer.onnx`); at
  load, numpy builds the window's inputs (agents.forecasting.lstm_inputs, the code the torch model trains
  on) and onnxruntime runs the model. The save is refused unless onnxruntime reproduces torch's forecast on
  the saved history within ONNX_TOLERANCE, or if the export fails.

Bundles are trusted artefacts checked by hash: every file's sha256 is checked against the manifest before it
is read, and the gradient-boosting file is a pickle (joblib) that is unpickled only after that check. A hash
protects against corruption and mix-ups, not against whoever can rewrite the manifest too: load bundles only
from where you load code.

Every problem with a directory or a history is one `twin.config.SpecError` naming the file or the field.
The oracle cannot be saved: it reads the twin's own demand model and exists only inside the twin.

This module imports no torch: saving a network calls the forecaster's own `export_onnx` (torch is loaded with
the forecaster, where it was trained), and loading or forecasting needs numpy, onnxruntime (LSTM, Transformer),
scikit-learn (gradient boosting, glm with scipy) or statsforecast (ETS, ARIMA, Croston, TSB, ADIDA, IMAPA) only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import re
import tempfile
from dataclasses import is_dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from agents.forecasting.base import Forecast, Forecaster, Frequency, SeriesPanel, sorted_quantiles
from agents.forecasting.factory import forecaster_class
from agents.forecasting.lstm_inputs import SERVING_INPUTS, SERVING_OUTPUTS, Normalisation, input_arrays, last_window
from twin.config import SpecError

FORMAT = "twin.forecaster/1"
MANIFEST = "forecaster.json"
LOCAL = ("seasonal_naive", "moving_average", "ets", "arima",  # fitted on the history they forecast from
         "croston", "tsb", "adida", "imapa", "glm")
NETWORKS = ("lstm", "transformer")  # torch networks on lstm_inputs, saved as ONNX (the forecaster's export_onnx)
GLOBAL = ("gradient_boosting",) + NETWORKS                     # fitted once, saved with their parameters
SAVABLE = LOCAL + GLOBAL
TREE_FILE = "gradient_boosting.joblib"
ONNX_FILES = {name: f"{name}.onnx" for name in NETWORKS}
ONNX_FILE = ONNX_FILES["lstm"]
ONNX_TOLERANCE = 1e-4  # the largest |torch - onnxruntime| forecast difference (demand units) accepted at save
PROJECT = "supplychain-twin"


# ------------------------------------------------------------------ save


def check_savable(name: str, path: str = "forecaster.name") -> None:
    """SpecError naming `path` unless a forecaster registered as `name` can be saved: never the oracle (it
    exists only inside the twin), nor an ensemble."""
    if name == "oracle":
        raise SpecError(f"{path}: 'oracle' cannot be saved: the oracle reads the twin's own demand model (the true "
                        f"mean), so it exists only inside the twin, never for real demand; allowed: "
                        f"{', '.join(SAVABLE)}")
    if name not in SAVABLE:
        raise SpecError(f"{path}: {name!r} cannot be saved; allowed: {', '.join(SAVABLE)}")


def save_forecaster(forecaster: Forecaster, name: str, history: SeriesPanel, directory: str | Path) -> Path:
    """Write `forecaster` (registered as `name`, fitted on `history` where it learns anything) into
    `directory` (created; files of the same names are replaced) with its manifest, written last; returns the
    directory.

    SpecError for the oracle (it exists only inside the twin), an ensemble or an unknown name, a global model
    not fitted yet, or a network (LSTM, Transformer) whose ONNX export fails or does not reproduce its torch
    forecast within ONNX_TOLERANCE.
    """
    check_savable("oracle" if getattr(forecaster, "name", None) == "oracle" else name)
    if getattr(forecaster, "name", name) != name:
        raise SpecError(f"forecaster.name: {name!r}, but the forecaster given is a {forecaster.name!r}")
    if history.n == 0 or history.length == 0:
        raise SpecError("history: no series or no periods; allowed: the history the forecaster was fitted on")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # until the new one is written, nothing here loads
    manifest: dict[str, Any] = {
        "format": FORMAT, "name": name, "parameters": _parameters(forecaster, name),
        "frequency": {"alias": history.freq.alias, "name": history.freq.name,
                      "season_length": history.freq.season_length},
        "covariates": None, "categories": None, "levels": [float(q) for q in forecaster.levels],
        "max_horizon": None,
        "training": {"first_date": _day(history.dates[0]), "last_date": _day(history.dates[history.length - 1]),
                     "series": history.n, "periods": history.length},
        "version": _version(), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    files: list[str] = []
    if name == "gradient_boosting":
        manifest.update(_save_tree(forecaster, history, directory, files))
    elif name in NETWORKS:
        manifest.update(_save_network(forecaster, name, history, directory, files))
    manifest["files"] = {f: sha256_file(directory / f) for f in files}
    _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return directory


def _save_tree(forecaster: Any, history: SeriesPanel, directory: Path, files: list[str]) -> dict[str, Any]:
    import joblib

    if not hasattr(forecaster, "_mean_model"):
        raise SpecError("forecaster: gradient_boosting is not fitted; call fit(history) before saving it")
    try:
        forecaster.check_compatible(history)
    except ValueError as error:
        raise SpecError(f"history: {error} (save a forecaster with the history it was fitted on)") from error
    joblib.dump(forecaster.without_history(), directory / TREE_FILE)
    files.append(TREE_FILE)
    return {"covariates": list(forecaster._covariate_names),
            "categories": {k: v.tolist() for k, v in forecaster._category_values.items()}}


def _save_network(forecaster: Any, name: str, history: SeriesPanel, directory: Path,
                  files: list[str]) -> dict[str, Any]:
    """An LSTM or a Transformer (`name`) as ONNX_FILES[name], checked against torch; its manifest fields."""
    if getattr(forecaster, "network", None) is None:
        raise SpecError(f"forecaster: {name} is not fitted; call fit(history) before saving it")
    try:
        forecaster._check_compatible(history)
    except ValueError as error:
        raise SpecError(f"history: {error}") from error
    norm = forecaster.normalisation()
    # the categories in the fitted order (the network's embeddings), each with the codes the fit saw
    fitted = forecaster.history
    names = [category for category, _ in forecaster._fitted_layout[3]]
    categories = {k: np.unique(fitted.categories[k]).tolist() for k in names}
    path = directory / ONNX_FILES[name]
    try:
        torch_forecast = forecaster.export_onnx(str(path), history)
    except Exception as error:  # noqa: BLE001 - the exporter raises its own types for what it cannot convert
        path.unlink(missing_ok=True)
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()  # without the exporter's colours
        raise SpecError(f"forecaster: {name}: the ONNX export failed ({type(error).__name__}: "
                        f"{message[0] if message else ''}); allowed: a network that torch.onnx exports") from error
    meta = {"normalisation": norm.to_json(), "scaling": forecaster.scaling}
    model = _OnnxNetwork(path, norm, forecaster.max_horizon)
    onnx_forecast = model.forecast(history, forecaster.max_horizon, tuple(forecaster.levels))
    diff = max(float(np.abs(onnx_forecast.mean - torch_forecast.mean).max(initial=0.0)),
               float(np.abs(onnx_forecast.quantiles - torch_forecast.quantiles).max(initial=0.0)))
    if not diff <= ONNX_TOLERANCE:
        path.unlink()  # nothing half-checked is left behind
        raise SpecError(f"forecaster: {name}: the ONNX model differs from torch on the saved history ({history.n} "
                        f"series, {forecaster.max_horizon} steps): max |difference| {diff:.3g}; allowed: "
                        f"{ONNX_TOLERANCE:g}")
    files.append(ONNX_FILES[name])
    meta["onnx_max_abs_diff"] = diff
    return {"covariates": list(history.covariate_names), "categories": categories,
            "max_horizon": int(forecaster.max_horizon), name: meta}


def _parameters(forecaster: Any, name: str) -> dict[str, Any]:
    """The constructor's keywords as the forecaster holds them, as JSON values (from its `config` dataclass
    where it keeps them there, as the Transformer keeps its network's; the LSTM's and the Transformer's
    `device` as resolved, e.g. "cpu" for "auto")."""
    config = getattr(forecaster, "config", None)
    holders = ([config] if is_dataclass(config) else []) + [forecaster]
    out = {}
    for key in inspect.signature(forecaster_class(name)).parameters:
        for holder in holders:
            if hasattr(holder, key):
                out[key] = _plain(getattr(holder, key))
                break
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)  # e.g. the LSTM's torch.device


def _day(stamp: Any) -> str:
    return str(stamp.date()) if getattr(stamp, "hour", 0) == 0 and getattr(stamp, "minute", 0) == 0 else \
        stamp.isoformat()


def _version() -> str:
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (saved forecasters and bundles hash their files with it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    Path(f.name).replace(path)


# ------------------------------------------------------------------ load


def load_forecaster(directory: str | Path) -> SavedForecaster:
    """The forecaster saved in `directory`, checked: the manifest's format and fields, every file's sha256
    (before any file is read); SpecError naming the file or the field otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: not found; allowed: a directory written by save_forecaster") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"{path}: not a readable JSON manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise SpecError(f"{path}: format: {found!r}; allowed: {FORMAT!r}")
    for key in ("name", "parameters", "frequency", "covariates", "categories", "levels", "max_horizon", "files"):
        if key not in manifest:
            raise SpecError(f"{path}: {key}: missing")
    name = manifest["name"]
    if name not in SAVABLE:
        raise SpecError(f"{path}: name: {name!r}; allowed: {', '.join(SAVABLE)}")
    files = manifest["files"]
    if not isinstance(files, dict) or not isinstance(manifest["parameters"], dict):
        raise SpecError(f"{path}: files and parameters: expected mappings")
    needed = {"gradient_boosting": [TREE_FILE], **{n: [file] for n, file in ONNX_FILES.items()}}.get(name, [])
    for file in needed:
        if file not in files:
            raise SpecError(f"{path}: files: {file} is not listed; a saved {name} needs it")
    for file, digest in files.items():
        target = directory / file
        if Path(file).name != file or not target.is_file():
            raise SpecError(f"{target}: listed in {MANIFEST} but missing")
        if sha256_file(target) != digest:
            raise SpecError(f"{target}: sha256 differs from {MANIFEST}'s: the file was changed or corrupted "
                            f"after it was saved")
    return SavedForecaster(directory, manifest)


class SavedForecaster:
    """A loaded forecaster: `forecast(history, horizon)` from any history of its frequency, covariates and
    categories (module docstring). Loading checked the files; each forecast checks the history."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.path = self.directory / MANIFEST
        try:
            freq = manifest["frequency"]
            self.frequency = Frequency(alias=str(freq["alias"]), name=str(freq["name"]),
                                       season_length=int(freq["season_length"]))
            self.levels = tuple(float(q) for q in manifest["levels"])
            self.max_horizon: int | None = None if manifest["max_horizon"] is None else int(manifest["max_horizon"])
            cov = manifest["covariates"]
            self.covariates: tuple[str, ...] | None = None if cov is None else tuple(str(c) for c in cov)
            cats = manifest["categories"]
            self.categories: dict[str, np.ndarray] | None = None if cats is None else {
                str(k): np.asarray(v, np.int64) for k, v in cats.items()}
        except (KeyError, TypeError, ValueError) as error:
            raise SpecError(f"{self.path}: frequency, levels, max_horizon, covariates or categories: malformed "
                            f"({type(error).__name__}: {error})") from error
        self._model: Any = None
        if self.name in LOCAL:
            self._local = forecaster_class(self.name)
            try:
                self._local(**self._local_parameters())
            except (TypeError, ValueError) as error:
                raise SpecError(f"{self.path}: parameters: {error}") from error
        elif self.name == "gradient_boosting":
            import joblib  # only after the hash check of load_forecaster

            self._model = joblib.load(self.directory / TREE_FILE)
            if getattr(self._model, "name", None) != "gradient_boosting" or not hasattr(self._model, "predict_from"):
                raise SpecError(f"{self.directory / TREE_FILE}: not a saved gradient_boosting forecaster")
        else:  # NETWORKS
            try:
                norm = Normalisation.from_json(manifest[self.name]["normalisation"])
            except (KeyError, TypeError, ValueError) as error:
                raise SpecError(f"{self.path}: {self.name}.normalisation: malformed ({error})") from error
            if self.max_horizon is None:
                raise SpecError(f"{self.path}: max_horizon: required for a {self.name}")
            self._model = _OnnxNetwork(self.directory / ONNX_FILES[self.name], norm, self.max_horizon)

    def _local_parameters(self) -> dict[str, Any]:
        params = dict(self.manifest["parameters"])
        if "levels" in params:
            params["levels"] = tuple(params["levels"])
        return params

    def __repr__(self) -> str:
        window = self.manifest.get("training", {})
        return (f"SavedForecaster({self.name}, {self.frequency.name}, trained {window.get('first_date')}.."
                f"{window.get('last_date')}, {self.directory})")

    # ---- checks ---------------------------------------------------------------------------------------------

    def unknown_series(self, history: SeriesPanel) -> np.ndarray:
        """(n,) bool: the series of `history` with a category value the saved model never saw (they cannot be
        forecast by it: select the others, and forecast these with a local model); all False for a model that
        reads no categories. The category names must be the saved ones (SpecError otherwise)."""
        self._check_category_names(history)
        unknown = np.zeros(history.n, bool)
        for name, known in (self.categories or {}).items():
            unknown |= ~np.isin(history.categories[name], known)
        return unknown

    def check(self, history: SeriesPanel, horizon: int) -> None:
        """SpecError naming the field unless this model can forecast `horizon` periods after `history`."""
        where = self.path
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise SpecError(f"horizon: {horizon!r} is not allowed; allowed: an integer >= 1")
        if self.max_horizon is not None and horizon > self.max_horizon:
            raise SpecError(f"horizon: {horizon} is over the saved {self.name}'s max_horizon ({where}); allowed: "
                            f"1..{self.max_horizon}")
        freq = history.freq
        if (freq.name, freq.season_length) != (self.frequency.name, self.frequency.season_length) or \
                freq.alias.split("-")[0] != self.frequency.alias.split("-")[0]:
            raise SpecError(f"history.freq: {freq.name} (alias {freq.alias}, season {freq.season_length}), but "
                            f"{where} frequency is {self.frequency.name} (alias {self.frequency.alias}, season "
                            f"{self.frequency.season_length}); allowed: {self.frequency.name} histories")
        if history.length < 1:
            raise SpecError("history.values: no periods; allowed: at least one observed period")
        if self.covariates is not None:
            if tuple(history.covariate_names) != self.covariates:
                raise SpecError(f"history.covariate_names: {list(history.covariate_names)}, but {where} covariates "
                                f"are {list(self.covariates)}; allowed: those, in that order")
            if self.covariates and horizon > history.future:
                raise SpecError(f"horizon: {horizon} needs the covariates {list(self.covariates)} {horizon} periods "
                                f"past the history, which has {history.future}; allowed: 1..{history.future}")
        unknown = self.unknown_series(history)
        if unknown.any():
            rows = np.flatnonzero(unknown)
            bad = {name: sorted(set(history.categories[name][rows].tolist()) - set(known.tolist()))
                   for name, known in self.categories.items()}
            bad = {k: v[:5] for k, v in bad.items() if v}
            raise SpecError(f"history.categories: {', '.join(f'{k} {v}' for k, v in bad.items())} (series "
                            f"{', '.join(history.ids[r] for r in rows[:3])}{' ...' if len(rows) > 3 else ''}) "
                            f"were never seen by the saved {self.name} ({where} categories); allowed: the codes "
                            f"listed there (SavedForecaster.unknown_series tells which series to leave out)")

    def _check_category_names(self, history: SeriesPanel) -> None:
        if self.categories is not None and set(history.categories) != set(self.categories):
            raise SpecError(f"history.categories: {sorted(history.categories)}, but {self.path} categories are "
                            f"{sorted(self.categories)}; allowed: those")

    # ---- forecasting ----------------------------------------------------------------------------------------

    def forecast(self, history: SeriesPanel, horizon: int) -> Forecast:
        """Mean and quantiles of the `horizon` periods after `history` (checked first: `check`)."""
        self.check(history, horizon)
        horizon = int(horizon)
        if history.n == 0:
            empty = np.zeros((0, horizon))
            return Forecast(mean=empty, quantiles=np.zeros((0, horizon, len(self.levels))), levels=self.levels)
        if self.name in LOCAL:
            model = self._local(**self._local_parameters())
            try:
                model.fit(history)
                return model.predict(horizon)
            except ValueError as error:  # what a local model refuses in this history (glm: a covariate ahead)
                raise SpecError(f"history: {error}") from error
        if self.name == "gradient_boosting":
            try:
                return self._model.predict_from(history, horizon)
            except ValueError as error:  # checked above; what is left is the model's own refusal
                raise SpecError(f"history: {error}") from error
        # a network (LSTM, Transformer): categories in the order of its embeddings
        ordered = replace(history, categories={k: history.categories[k] for k in self.categories})
        return self._model.forecast(ordered, horizon, self.levels)


class _OnnxNetwork:
    """An LSTM's or a Transformer's serving model (lstm._Serving as ONNX) run by onnxruntime on inputs built with
    numpy."""

    def __init__(self, path: Path, norm: Normalisation, max_horizon: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt file
            raise SpecError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from error
        self.inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if not set(self.inputs) <= set(SERVING_INPUTS) or list(SERVING_OUTPUTS) != outputs[:2]:
            raise SpecError(f"{path}: inputs {self.inputs}, outputs {outputs}; allowed: inputs among "
                            f"{list(SERVING_INPUTS)} and outputs {list(SERVING_OUTPUTS)} (written by "
                            f"save_forecaster)")
        self.norm, self.max_horizon = norm, max_horizon

    def forecast(self, history: SeriesPanel, horizon: int, levels: tuple[float, ...]) -> Forecast:
        """The first `horizon` of the model's `max_horizon` steps after `history`, sorted as torch's are."""
        window = last_window(input_arrays(history, self.max_horizon, self.norm), self.norm, self.max_horizon)
        mean, quantiles = self.session.run(list(SERVING_OUTPUTS), {k: window[k] for k in self.inputs})
        mean = mean[:, :horizon].astype(np.float64)
        quantiles = quantiles[:, :horizon].astype(np.float64)
        return Forecast(mean=mean, quantiles=sorted_quantiles(mean, quantiles - mean[..., None]), levels=levels)
