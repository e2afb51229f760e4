"""Drop-folder mode: decide the ERP state files dropped into a folder, write decision CSVs (and JSON) to another.

    python -m experiments.dropfolder bundle=outputs/export/RUN/bundle inbox=erp/in outbox=erp/out
    python -m experiments.dropfolder bundle=... inbox=erp/in outbox=erp/out once=true       # one pass, then exit
    ERP_HOOK_SECRET=... python -m experiments.dropfolder bundle=... inbox=... outbox=... \\
        webhook.url=https://erp.example.com/hooks/replenishment webhook.secret_env=ERP_HOOK_SECRET

The folder's rules (complete files only, atomic outputs, processed/ and rejected/, decided once) are those of
`agents.deploy.adapters.DropFolder`. Everything is checked before the first poll: a bad key, bundle or webhook is one
`config error:` line and exit status 2. With `once=true` the exit status is 1 when a file was rejected or its push
failed; otherwise the folder is polled until Ctrl-C or SIGTERM (or `max_polls`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.deploy.adapters import DropFolder, WebhookConfig, WebhookPusher
from agents.deploy.bundle import load_bundle
from experiments.startup import config_errors, plain, run_checked
from twin.config import ConfigReader

log = logging.getLogger(__name__)


@hydra.main(config_path="../conf", config_name="dropfolder", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Load the bundle, set up the folder (and webhook), then one pass or poll until stopped."""
    data = plain(cfg)
    with config_errors():
        r = ConfigReader(data, "")
        bundle_path, inbox, outbox = r.text("bundle"), r.text("inbox"), r.text("outbox")
        poll_seconds = r.number("poll_seconds", 2.0, low=0, high=86_400)
        once = r.flag("once", False)
        max_polls = r.integer("max_polls", low=1, optional=True)
        webhook = WebhookConfig.from_dict(r.raw("webhook"), "webhook")
        r.done()
        bundle = load_bundle(Path(to_absolute_path(bundle_path)))
        pusher = WebhookPusher(webhook) if webhook else None
        folder = DropFolder(bundle, Path(to_absolute_path(inbox)), Path(to_absolute_path(outbox)), pusher)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line shows the URL's query (a secret, maybe)
    try:
        if once:
            outcomes = folder.process_once()
            for o in outcomes:
                print(f"{o.state}: {o.status}" + (f" ({o.error.splitlines()[0]})" if o.error else ""))
            failed = sum(o.status in ("rejected", "push_failed") for o in outcomes)
            print(f"bundle {bundle.name} ({bundle.sha256[:12]}): {len(outcomes)} state files, {failed} not done; "
                  f"outbox {folder.outbox}")
            if failed:
                sys.exit(1)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        polls = folder.run(poll_seconds, stop_after=max_polls, stop=stop)
        log.info("drop folder stopped after %d polls", polls)
    finally:
        if pusher is not None:
            pusher.close()


if __name__ == "__main__":
    run_checked(main)
