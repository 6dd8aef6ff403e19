"""A chat bot's Qomon side: one contact per person who writes, and a feed of contact changes.

Two tasks share one client until Ctrl-C (SIGINT) or SIGTERM:

* ``handle_messages``: each incoming message (here: JSON lines on stdin,
  ``{"mail": ..., "firstname": ..., "text": ...}``) gets the person's contact, created if
  missing (``ensure_contact``), tagged with the latest message's topic when asked;
* ``follow_changes``: ``watch_contacts`` reports every contact created or updated in the space
  (by anyone), and persists its cursor in ``BOT_CURSOR_FILE`` after each one, so that a
  restarted bot resumes where it stopped.

On Ctrl-C both tasks are cancelled: a request waiting for the rate limiter is dropped (nothing
sent), the cursor file holds the last change handled, and the client closes its connections.

Configuration: ``QOMON_API_KEY``, ``QOMON_BASE_URL``, ``BOT_CURSOR_FILE`` (default
``bot-cursor.json``), ``BOT_POLL_INTERVAL`` (seconds, default 60).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from qomon_async import ContactDict, QomonClient, QomonError, WatchCursor

CURSOR_FILE = Path(os.environ.get("BOT_CURSOR_FILE", "bot-cursor.json"))
POLL_INTERVAL = float(os.environ.get("BOT_POLL_INTERVAL", "60"))


async def read_messages(queue: asyncio.Queue[dict[str, str]]) -> None:
    """Stand-in for a chat platform: one JSON message per line of stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip():
            await queue.put(json.loads(line))
    # End of input: keep following changes until Ctrl-C.


async def handle_messages(client: QomonClient, queue: asyncio.Queue[dict[str, str]]) -> None:
    while True:
        message = await queue.get()
        person: ContactDict = {"mail": message.get("mail", "")}  # no mail: refused below
        if message.get("firstname"):
            person["firstname"] = message["firstname"]
        if message.get("surname"):
            person["surname"] = message["surname"]
        try:
            contact = await client.ensure_contact(person, max_wait=10)
        except QomonError as exc:
            print(f"message not recorded: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"message from contact {contact.id}: {message.get('text', '')!r}", flush=True)


def load_cursor() -> WatchCursor | None:
    return WatchCursor.from_json(CURSOR_FILE.read_text()) if CURSOR_FILE.exists() else None


def save_cursor(cursor: WatchCursor) -> None:
    # A few hundred bytes; written whole then renamed, so a crash never leaves half a cursor.
    temporary = CURSOR_FILE.with_suffix(".tmp")
    temporary.write_text(cursor.to_json())
    temporary.replace(CURSOR_FILE)


async def follow_changes(client: QomonClient) -> None:
    watch = client.watch_contacts(cursor=load_cursor(), interval=POLL_INTERVAL)
    while True:
        try:
            async for contact in watch:
                print(f"changed: contact {contact.id} at {contact.updated_at:%H:%M:%S}", flush=True)
                save_cursor(watch.cursor)  # after handling it: a restart resumes after this change
        except QomonError as exc:
            # Qomon unreachable or busy beyond the retries: the watch stays usable, and its
            # next poll comes after the interval.
            print(f"watch: {type(exc).__name__}; polling again later", flush=True)


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    async with QomonClient() as client:
        tasks = [
            asyncio.create_task(read_messages(queue)),
            asyncio.create_task(handle_messages(client, queue)),
            asyncio.create_task(follow_changes(client)),
        ]
        print("bot running; Ctrl-C to stop", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print("bot stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
