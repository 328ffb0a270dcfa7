"""``python -m api.cli``: operator commands on the event log and the projections.

    replay QUEUE_ID            print a queue's event timeline (the audit trail)
    rebuild-projections        drop the read model and replay the log from event 0
                               (refused while followers run; --wait waits for them to stop)
    project                    run the projection runners in the foreground
    dispatch                   run the dispatcher (publishes step messages) in the foreground
    search QUESTION --user ID  print the top moments of a tutor's lectures for a question
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from api.settings import Settings
from api.storage_report import build_sweeper
from api.wiring import (
    Core,
    build_core,
    build_dispatcher,
    build_leadership,
    build_notification_followers,
    build_search_index,
    build_storage,
)
from domain import VidpipeError
from handlers.failpoints import armed as armed_failpoints
from projections.follower import EventFollower
from projections.leadership import FollowersRunning, LeadershipLost, exclusive, leadership_for

logger = logging.getLogger("vidpipe.cli")


def replay(settings: Settings, queue_id: str, console: Console) -> int:
    core = build_core(settings)
    try:
        entries = core.app.timeline(queue_id)
        queue = core.app.replay(queue_id)
    finally:
        core.close()
    table = Table(title=f"queue {queue_id}: {queue.status}", title_justify="left")
    for column in ("#", "time (UTC)", "event", "step", "attempt", "reason / detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.position),
            e.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            e.event,
            e.step or "",
            "" if e.attempt is None else str(e.attempt),
            e.detail,
        )
    console.print(table)
    return 0


def rebuild_projections(settings: Settings, console: Console, *, wait: bool = False) -> int:
    """Replay the log from event 0 into each projection (not the push notifier: it would push again).

    The rebuild leads the projections' keys as their followers do (``make
    project``, the API's), so it never writes a projection while one of them
    runs: it refuses when one leads, or with ``wait`` waits for it to stop.
    """
    core = build_core(settings)
    index = build_search_index(settings, core)
    notifications = build_notification_followers(settings, core)[0]
    followers = (core.queue_status, notifications, index.follower)

    def waiting(holders: dict[str, str | None]) -> None:
        console.print("waiting for the running followers to stop or hand over... "
                      + ", ".join(f"{key} led by {who or 'nobody now'}" for key, who in holders.items()))

    try:
        with exclusive(leadership_for(settings.database), [f.key for f in followers], wait=wait,
                       poll_interval=settings.leadership_poll_seconds, waiting=waiting) as fence:
            _rebuild(followers, core, console, fence)
    except FollowersRunning as running:
        raise VidpipeError(
            f"followers of the projections are running: {running}. Nothing was changed. Stop them "
            "(make project, the API's followers) or run again with --wait (make rebuild-projections WAIT=1) "
            "to rebuild once they have stopped"
        ) from None
    except LeadershipLost as lost:
        raise VidpipeError(
            f"lost the lead of {lost} during the rebuild (is the database reachable?): that projection's "
            "rebuild was rolled back and its followers may go on; run the rebuild again"
        ) from None
    finally:
        index.close()
        core.close()
    return 0


def _rebuild(followers: Sequence[EventFollower], core: Core, console: Console, fence: Callable[[], None]) -> None:
    """Rebuild each projection in turn; ``fence`` (the keys are still ours) is checked before each batch."""
    for follower in followers:
        with Progress(
            TextColumn(f"rebuilding {follower.projection.name:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("rebuild", total=core.app.recorder.max_notification_id() or 0)

            def progress(done: int, total: int, task: TaskID = task, bar: Progress = bar) -> None:
                fence()  # raises inside the rebuild's transaction: a lost key rolls it back
                bar.update(task, completed=done, total=total)

            replayed = follower.rebuild(progress=progress)
        console.print(f"rebuilt {follower.projection.name} from {replayed} events")


def search(settings: Settings, console: Console, question: str, owner_id: str, limit: int,
           queue_id: str | None) -> int:
    """Print the top moments of ``owner_id``'s lectures for ``question``."""
    core = build_core(settings)
    index = build_search_index(settings, core)
    try:
        index.follower.catch_up()
        result = index.search.search(owner_id, question, limit=limit, queue_id=queue_id)
    finally:
        index.close()
        core.close()
    table = Table(title=f"{question!r} in {owner_id}'s lectures ({result.mode})", title_justify="left")
    for column in ("#", "lecture", "at", "found by", "what is said"):
        table.add_column(column, overflow="fold")
    for number, moment in enumerate(result.moments, start=1):
        said = Text(moment.text)
        for start, end in moment.highlights:
            said.stylize("bold yellow", start, end)
        table.add_row(str(number), moment.filename or moment.queue_id, _clock(moment.start_seconds),
                      moment.retriever, said)
    console.print(table)
    if result.notice:
        console.print(f"[yellow]note:[/yellow] {result.notice}")
    if not result.moments:
        console.print("no moment of a completed lecture matches")
    return 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def follow(settings: Settings, console: Console, *, dispatcher: bool) -> int:
    """Run followers of the event log until SIGINT/SIGTERM, each while this process leads it."""
    core = build_core(settings)
    followers = build_leadership(settings, (
        [build_dispatcher(settings, core)]
        if dispatcher
        else [core.queue_status, *build_notification_followers(settings, core),
              build_search_index(settings, core).follower]
    ))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for follower in followers:
        follower.start()
        console.print(f"{follower.key}: at event {follower.position}; applies the log while this process leads it "
                      "(another runner of it may lead: this one then stands by)")
    sweeper = None
    if not dispatcher and settings.storage_sweep_interval_seconds > 0:  # orphaned uploads (api.storage_report)
        sweeper = build_sweeper(settings, core, build_storage(settings)).start()
        console.print(f"storage sweeper: every {settings.storage_sweep_interval_seconds:g} s, "
                      f"files orphaned for {settings.storage_sweep_grace_seconds:g} s")
    stop.wait()
    if sweeper is not None:
        sweeper.stop()
    for follower in followers:
        follower.stop()
    core.close()
    console.print("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidpipe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replay_parser = commands.add_parser("replay", help="print a queue's event timeline")
    replay_parser.add_argument("queue_id")
    rebuild_parser = commands.add_parser("rebuild-projections", help="replay the log into a fresh read model")
    rebuild_parser.add_argument("--wait", action="store_true",
                                help="wait for running followers of the projections to stop instead of refusing")
    commands.add_parser("project", help="run the projection runners")
    commands.add_parser("dispatch", help="run the dispatcher that publishes step messages")
    search_parser = commands.add_parser("search", help="print the top moments of a tutor's lectures")
    search_parser.add_argument("question")
    search_parser.add_argument("--user", default="dev-tutor", help="the tutor (owner id) whose lectures to search")
    search_parser.add_argument("--limit", type=int, default=5)
    search_parser.add_argument("--queue", default=None, help="search only this lecture (queue id)")
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = Console(width=shutil.get_terminal_size((160, 24)).columns)
    try:
        armed_failpoints()  # a malformed VIDPIPE_FAILPOINTS stops the start
        if args.command == "replay":
            return replay(settings, args.queue_id, console)
        if args.command == "rebuild-projections":
            return rebuild_projections(settings, console, wait=args.wait)
        if args.command == "search":
            return search(settings, console, args.question, args.user, args.limit, args.queue)
        return follow(settings, console, dispatcher=args.command == "dispatch")
    except VidpipeError as error:
        console.print(f"[red]error:[/red] {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
