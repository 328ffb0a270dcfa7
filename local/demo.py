"""``python -m local.demo`` (``make demo VIDEO=<path>``): one video through the running service.

Uploads the video to the API (``make run`` must be running), shows a live
progress bar per step in the terminal from the queue's server-sent-event
stream (falling back to polling the status), and prints the outcome: where
the compressed video, the audio, the transcript (every format, with its
download URL) and the embeddings ended up. Exits 0 when processing
completed, 1 with the reason when it failed or was cancelled, 2 when it
could not start (service unreachable, upload refused, bad arguments).

Without ``--video`` it makes a short lecture clip itself (espeak-ng speaks a
few sentences over an ffmpeg test pattern) in ``data/demo/``. Without
``--token`` it mints a tutor token for the development secret, as the
embedded default accepts.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from domain import VidpipeError
from handlers.media import tools

API = "/api/video-processing"
STEPS = ("compress", "audio-convert", "transcribe", "embed")
TERMINAL = ("completed", "failed", "cancelled")
TRANSCRIPT_FORMATS = ("json", "srt", "vtt", "txt")
DEMO_DIR = Path("data") / "demo"
DEMO_SENTENCES = (
    "Welcome to this short lecture on thermodynamics.",
    "Energy is conserved in a closed system.",
    "Thank you for listening.",
)
DEV_USER = "dev-tutor"


class DemoError(Exception):
    """Something stopped the demo before processing could be followed (exit 2)."""


# ------------------------------------------------------------------ the video
def demo_video(directory: Path = DEMO_DIR) -> Path:
    """The default clip: espeak-ng reading :data:`DEMO_SENTENCES` over a test pattern (made once)."""
    target = directory / "lecture.mp4"
    if target.is_file() and target.stat().st_size > 0:
        return target
    found = {name: tools.resolve(name) for name in (tools.ESPEAK, tools.FFMPEG)}
    missing = [tool for tool in found.values() if not tool.found]
    if missing:
        raise DemoError("; ".join(f"{tool.name} not found ({tool.problem}): {tool.fix}" for tool in missing)
                        + "; or pass --video PATH")
    directory.mkdir(parents=True, exist_ok=True)
    speech = directory / "lecture.wav"
    markup = "<speak>" + '<break time="700ms"/>'.join(DEMO_SENTENCES) + "</speak>"
    partial = directory / ".lecture.partial.mp4"
    try:
        subprocess.run([found[tools.ESPEAK].require(), "-m", "-s", "150", "-w", str(speech), markup],
                       check=True, capture_output=True, timeout=60)
        speech_over_test_pattern(speech, partial, ffmpeg=found[tools.FFMPEG].require())
    except subprocess.CalledProcessError as error:
        raise DemoError(f"making the demo clip failed: {error.stderr.decode(errors='replace').strip()}") from None
    finally:
        speech.unlink(missing_ok=True)
    os.replace(partial, target)
    return target


def speech_over_test_pattern(
    speech: Path, target: Path, *, size: str = "640x360", audio_bitrate: str = "64k", ffmpeg: str | None = None
) -> None:
    """Write an MP4 (H.264 test pattern + AAC) as long as the ``speech`` recording; raises CalledProcessError.

    ``ffmpeg`` defaults to the one :mod:`handlers.media.tools` resolves. The length is given (``-t``) as well as
    ``-shortest``: ffmpeg 7's ``-shortest`` lets the endless test pattern run 1.5-3 s past the speech."""
    from handlers.media.probe import probe

    seconds = probe(speech).duration
    subprocess.run([
        ffmpeg or tools.ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10", "-i", str(speech),
        "-map", "0:v", "-map", "1:a", "-shortest", *(["-t", f"{seconds:.3f}"] if seconds else []),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", audio_bitrate,
        "-f", "mp4", str(target),
    ], check=True, capture_output=True, timeout=120)


# ------------------------------------------------------------------ the API
class ProgressFile:
    """A file whose reads advance a progress bar (httpx streams the multipart body from it)."""

    def __init__(self, handle: BinaryIO, progress: Progress, task: TaskID) -> None:
        self.handle, self.progress, self.task = handle, progress, task

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.progress.advance(self.task, len(chunk))
        return chunk

    def fileno(self) -> int:
        return self.handle.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()


def error_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)
    except ValueError:
        return response.text or response.reason_phrase


def check_service(client: httpx.Client) -> None:
    try:
        client.get("/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        raise DemoError(
            f"the vidpipe API at {client.base_url} does not answer ({error}); start it with `make run` "
            "(or pass --api URL)"
        ) from None


def upload(client: httpx.Client, video: Path, console: Console) -> dict[str, Any]:
    columns = (TextColumn("upload   "), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as progress, video.open("rb") as handle:
        task = progress.add_task("upload", total=video.stat().st_size)
        media_type = mimetypes.guess_type(video.name)[0] or "video/mp4"
        files = {"file": (video.name, ProgressFile(handle, progress, task), media_type)}
        response = client.post(f"{API}/upload", files=files, timeout=httpx.Timeout(30, write=600))
    if response.status_code != 202:
        raise DemoError(f"the upload was refused ({response.status_code}): {error_of(response)}")
    return dict(response.json())


def server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, str, str | None]]:
    """``(event, data, id)`` of each event in a text/event-stream."""
    event, data, event_id = "message", [], None
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
    if data:
        yield event, "\n".join(data), event_id


@dataclass
class Follower:
    """Follows one queue to its end, keeping a progress bar per step up to date."""

    client: httpx.Client
    queue_id: str
    progress: Progress
    console: Console
    tasks: dict[str, TaskID] = field(default_factory=dict)
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_id: int = 0
    row: dict[str, Any] | None = None

    def run(self, deadline: float) -> dict[str, Any]:
        for step in STEPS:
            self.tasks[step] = self.progress.add_task(step, total=100, status="pending")
        while time.monotonic() < deadline:
            try:
                self._stream()
            except httpx.HTTPError as error:
                self.console.print(f"[dim]stream interrupted ({error}); polling the status[/dim]")
                self._poll_once()
            if self.row is not None and self.row["status"] in TERMINAL:
                return self.row
            time.sleep(1)
        raise TimeoutError(f"queue {self.queue_id} did not finish in time")

    def _stream(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_id:
            headers["Last-Event-ID"] = str(self.last_id)
        url = f"{API}/status/{self.queue_id}/stream"
        with self.client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=60)) as response:
            if response.status_code != 200:
                response.read()
                raise DemoError(f"cannot follow queue {self.queue_id} ({response.status_code}): {error_of(response)}")
            for event, data, event_id in server_sent_events(response.iter_lines()):
                if event_id and event_id.isdigit():
                    self.last_id = int(event_id)
                if event == "status":
                    self.show(json.loads(data))

    def _poll_once(self) -> None:
        response = self.client.get(f"{API}/status/{self.queue_id}", timeout=30)
        if response.status_code == 200:
            self.show(response.json())

    def show(self, row: dict[str, Any]) -> None:
        self.row = row
        for step in row.get("steps") or []:
            name = step["step"]
            if name not in self.tasks:
                continue
            label = step["status"] + (f", {step['retries']} retr{'y' if step['retries'] == 1 else 'ies'}"
                                      if step.get("retries") else "")
            self.progress.update(self.tasks[name], completed=step["progress"], status=label)
            key = (step["status"], step.get("retries") or 0)
            if self.seen.get(name) != key:
                self.seen[name] = key
                self._announce(step)

    def _announce(self, step: dict[str, Any]) -> None:
        status, name = step["status"], step["step"]
        if status == "retrying":
            self.console.print(f"[yellow]{name}: retry {step['retries']} scheduled[/yellow] — {step.get('last_error')}")
        elif status == "failed":
            self.console.print(f"[red]{name} failed[/red]: {step.get('last_error')}")
        elif status in ("running", "completed", "cancelled"):
            extra = f" ({step['duration_seconds']:.1f} s)" if status == "completed" and step.get("duration_seconds") else ""
            self.console.print(f"{name}: {status}{extra}")


def follow(client: httpx.Client, queue_id: str, console: Console, timeout: float) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        return Follower(client, queue_id, progress, console).run(time.monotonic() + timeout)


# ------------------------------------------------------------------ the outcome
def outputs_of(row: dict[str, Any], step: str) -> dict[str, Any]:
    found = next((s for s in row.get("steps") or [] if s["step"] == step), None)
    return dict((found or {}).get("outputs") or {})


def report(row: dict[str, Any], api_url: str, storage_dir: Path, database_url: str, console: Console) -> None:
    """Where every artifact of a completed queue is: storage paths, download URLs, the embeddings table."""
    queue_id = row["queue_id"]
    out = Console(file=console.file, soft_wrap=True, highlight=False, no_color=console.no_color)

    def where(key: str | None) -> str:
        if not key:
            return "— (not produced)"
        path = storage_dir / key
        return str(path) if path.exists() else f"{key} (storage key; not under {storage_dir} here)"

    compressed = outputs_of(row, "compress")
    audio = outputs_of(row, "audio-convert")
    transcript = outputs_of(row, "transcribe")
    embed = outputs_of(row, "embed")
    out.print(f"\nqueue {queue_id}: {row['status']} — artifacts (storage keys under {storage_dir}/):")
    if compressed.get("playback") == "original":
        out.print("  compressed video  none: the file holds only sound, so the original is played")
    else:
        out.print(f"  compressed video  {where(compressed.get('video'))}")
    if compressed.get("video"):
        out.print(f"                    {_size(compressed.get('source_size_bytes'))} → "
                  f"{_size(compressed.get('size_bytes'))}, {compressed.get('width')}x{compressed.get('height')}")
    out.print(f"  audio             {where(audio.get('audio'))}")
    for fmt in TRANSCRIPT_FORMATS:
        out.print(f"  transcript {fmt:<5}  {where(transcript.get(f'transcript_{fmt}'))}")
    out.print("  transcript downloads (Authorization: Bearer <token>):")
    for fmt in TRANSCRIPT_FORMATS:
        out.print(f"    {api_url}{API}/status/{queue_id}/transcript?format={fmt}")
    chunks = embed.get("chunks", 0)
    out.print(
        f"  embeddings        {chunks} chunk{'' if chunks == 1 else 's'} × {embed.get('dimension')} dimensions "
        f"(model {embed.get('model')}, server {embed.get('server')}) in table video_embeddings "
        f"(queue_id = {queue_id}) of {database_url}"
    )


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return "?"
    return f"{value / 1e6:.1f} MB" if value >= 1e5 else f"{value / 1e3:.1f} KB"


def transcript_text(client: httpx.Client, queue_id: str) -> str | None:
    response = client.get(f"{API}/status/{queue_id}/transcript", params={"format": "txt"}, timeout=30)
    return response.text.strip() if response.status_code == 200 else None


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_api = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help=f"the video to process (default: a lecture clip made in {DEMO_DIR}/)")
    parser.add_argument("--api", default=default_api, help=f"the running vidpipe API (default: {default_api})")
    parser.add_argument("--token", default=os.environ.get("VIDPIPE_TOKEN"),
                        help="bearer token of a tutor (default: $VIDPIPE_TOKEN, else one minted for the development secret)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for processing (default: 1800)")
    return parser.parse_args(argv)


def development_token() -> str:
    from api.settings import Settings
    from api.token import mint

    return mint(Settings(), user=DEV_USER, role="tutor")


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parse_args(argv)
    console = console or Console()
    from api.settings import Settings

    try:
        settings = Settings()
        token = args.token or development_token()
        video = args.video if args.video is not None else demo_video()
        if not video.is_file():
            raise DemoError(f"no such video file: {video}")
        api_url = args.api.rstrip("/")
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}) as client:
            check_service(client)
            console.print(f"uploading {video} ({video.stat().st_size} bytes) to {api_url}")
            accepted = upload(client, video, console)
            queue_id = accepted["queue_id"]
            note = " (the same file was uploaded before: following that queue)" if accepted.get("reused") else ""
            console.print(f"queue {queue_id}: {accepted['status']}{note}")
            console.print(f"watch it in the browser too: {api_url}/")
            row = follow(client, queue_id, console, args.timeout)
            if row["status"] != "completed":
                console.print(f"[red]processing {row['status']}[/red]: {row.get('error') or 'no reason given'}")
                return 1
            report(row, api_url, Path(settings.storage_dir), settings.database_url, console)
            text = transcript_text(client, queue_id)
            if text:
                console.print(f"  transcript text   {' '.join(text.split())}", soft_wrap=True, highlight=False)
            console.print(f"[green]processing completed[/green] in queue {queue_id}")
            return 0
    except (DemoError, VidpipeError) as error:
        console.print(f"[red]demo: {error}[/red]")
        return 2
    except TimeoutError as error:
        console.print(f"[red]demo: {error}[/red]")
        return 1
    except httpx.HTTPError as error:
        console.print(f"[red]demo: the API stopped answering: {error}[/red]")
        return 2


if __name__ == "__main__":
    sys.exit(main())
