"""Decide offline: the service's decisions for ERP state files, without a server (batch runs from ERP exports).

    python -m experiments.decide bundle=outputs/export/RUN/bundle state=erp_state.json
    python -m experiments.decide bundle=outputs/export/RUN/bundle.zip state=exports/     # every *.json in it

Per state file, <name>.decisions.json and <name>.decisions.csv go into the run directory: the same decisions,
recommendation ids included, that `POST /v1/decisions` answers for the same state and bundle. Every state is
read and checked before any decision is written: a bad one stops the run with one line naming the file and
field (exit status 2), and nothing is written.

With `webhook.url=...` (conf/webhook/default.yaml) each written response is also pushed there
(agents.deploy.adapters.WebhookPusher: retries, an Idempotency-Key per response, so running again pushes nothing
twice to a receiver that keeps keys); a push that fails is one `webhook error:` line and exit status 2 after the
others were pushed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.deploy.adapters import WebhookConfig, WebhookError, WebhookPusher, write_decisions
from agents.deploy.bundle import load_bundle
from agents.deploy.conversion import ErpStateError, error_fields
from agents.deploy.decide import DecisionResponse, decide
from agents.deploy.erp_state import ErpState
from experiments.startup import config_errors, plain, run_checked, run_dir, stop
from twin import SpecError
from twin.config import ConfigReader


def state_files(path: Path) -> list[Path]:
    """The state file, or the *.json files of a folder (sorted); SpecError naming `state` if there are none."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if files:
            return files
        raise SpecError(f"state: folder {str(path)!r} holds no *.json state file")
    raise SpecError(f"state: {str(path)!r} does not exist; allowed: an ERP state JSON file or a folder of them")


def read_state(path: Path) -> ErpState:
    """An ERP state file, validated; SpecError naming the file and the first bad field."""
    from pydantic import ValidationError

    try:
        return ErpState.model_validate_json(path.read_bytes())
    except ValidationError as error:
        field, message = error_fields(error)[0]
        more = len(error.errors()) - 1
        raise SpecError(f"state {path.name}: {field or 'state'}: {message}"
                        + (f" (and {more} more)" if more else "")) from error


def decide_files(bundle, files: list[Path]) -> list[tuple[Path, DecisionResponse]]:
    """Decisions for every file, all decided before any is returned (SpecError naming file and field)."""
    out = []
    for path in files:
        state = read_state(path)
        try:
            out.append((path, decide(bundle, state)))
        except ErpStateError as error:
            raise SpecError(f"state {path.name}: {error}") from error
    return out


@hydra.main(config_path="../conf", config_name="decide", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Load the bundle, check every state, decide, write."""
    data = plain(cfg)
    with config_errors():
        r = ConfigReader(data, "")
        bundle_path, state_path = r.text("bundle"), r.text("state")
        webhook = WebhookConfig.from_dict(r.raw("webhook"), "webhook")
        r.done()
        bundle = load_bundle(Path(to_absolute_path(bundle_path)))
        results = decide_files(bundle, state_files(Path(to_absolute_path(state_path))))
    out = run_dir()
    for path, response in results:
        write_decisions(response, out, path.stem)
        orders = sum(1 for d in response.decisions if d.document is not None)
        print(f"{path.name}: {len(response.decisions)} decisions, {orders} orders")
    print(f"bundle {bundle.name} ({bundle.sha256[:12]}); written to {out}")
    if webhook is not None:
        push(webhook, results)


def push(webhook: WebhookConfig, results: list[tuple[Path, DecisionResponse]]) -> None:
    """Push every response to the webhook; after trying them all, one `webhook error:` line if any failed."""
    failed = []
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line shows the URL's query (a secret, maybe)
    with WebhookPusher(webhook) as pusher:
        for path, response in results:
            try:
                done = pusher.push(response)
                print(f"{path.name}: pushed to {webhook.safe_url} (HTTP {done.status}, {done.attempts} tries)")
            except WebhookError as error:
                failed.append(f"{path.name}: {error}")
    if failed:
        stop(f"{len(failed)} of {len(results)} responses not pushed; first: {failed[0]}", kind="webhook")


if __name__ == "__main__":
    run_checked(main)
