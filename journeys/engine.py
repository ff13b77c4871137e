"""The fast path's micro-batch step: new events in, journey decisions and deliveries out.

One `FastPath.step()`:
1. ingest: read the events landed since the durable received_at watermark; in event-time order,
   exit events end instances (match on the trigger key or the subject), trigger events start
   instances or restart the timer of the steps not yet taken (folding cart items);
2. plan: for every instance whose next step is due on the journey clock, decide (holdout,
   profile order, condition, consent, identifiers, frequency cap) and write the intent to the
   outbox, in the same transaction as the watermark and the instance's new position;
3. ingest again: events that landed while planning are applied (what they start that is due
   at once is planned too, and read again after), and pending sends of instances that exited
   meanwhile are cancelled: an `Order Completed` that landed before a step goes out cancels
   that step (exits win races);
4. dispatch: pending intents go out through activations/ with their stable idempotency keys
   (journeys/dispatch.py: within the step, or on a thread per step in the long-lived worker,
   whose answers are then recorded by the next step); answers are recorded (delivered;
   rejected: retried with backoff, dead after max_attempts).
A crash anywhere re-reads uncommitted events and re-sends committed intents with the same key,
so the destination deduplicates and nothing is sent twice.

Instance rules (decided here, documented in journeys.yml):
- A restart (a trigger with the same key) moves the steps not yet taken; a step already taken
  is never taken again for that instance.
- Steps due late (the worker was down) keep their spacing: the next step falls due no sooner
  than its gap after the previous one, so a customer never gets the email and the SMS at once.
- The holdout is a stable hash of (journey, subject): the same person is always in or out.
"""

from __future__ import annotations

import heapq
import json
import operator
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq

from activations.caps import CapLedger
from activations.destinations.base import (
    Action,
    Outcome,
    Record,
    RecordResult,
)
from activations.templates import TemplateRenderError
from headwater import snapshots
from journeys.clock import Clock, utc_now
from journeys.config import Journey, JourneysFile, Step, StepKind
from journeys.decisions import blocked, step_conditions, step_context
from journeys.dispatch import Dispatcher, StepClient
from journeys.feed import FeedQueue, FeedWriter
from journeys.instances import (
    CART_EVENTS,
    INSTANCE_COLUMNS,
    Event,
    Instance,
    StepResult,
    fold_cart,
    in_holdout,
    instance_cap_subject,
    instance_row,
    members,
    parse_event,
)
from journeys.profiles import ProfileIndex, ProfileLookup
from journeys.sources import EventSource
from journeys.state import CATALOG, DELIVERY_COLUMNS, JOURNAL_COLUMNS

RETRY_BACKOFF_SECONDS = (1, 5, 30, 120, 600)
# How many times a step reads and plans again what landed while it planned (FastPath.step).
REPLAN_ROUNDS = 3
# The identifiers an instance is found by when an exit event arrives (FastPath.by_subject).
SUBJECT_KINDS = ("profile_id", "user_id", "anonymous_id", "email")


# Rows for executemany in one C call each (a generator over the columns was ~0.1 ms per event).
_JOURNAL_ROW = operator.itemgetter(*JOURNAL_COLUMNS)
_DELIVERY_ROW = operator.itemgetter(*DELIVERY_COLUMNS)


class FastPath:
    """The journeys runtime over one owned state connection. Not thread-safe; one per process,
    and only while holding the fast-path lock (journeys/runtime.py)."""

    def __init__(
        self,
        con: sqlite3.Connection,
        config: JourneysFile,
        source: EventSource,
        profiles: ProfileLookup,
        clock: Clock,
        *,
        ledger: CapLedger | None = None,
        activity_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        default_region: str = "US",
        background_dispatch: bool = False,
    ) -> None:
        self.con = con
        self.config = config
        self.journeys = {j.name: j for j in config.journeys}
        self.source = source
        self.profiles = profiles
        self.clock = clock
        self.ledger = ledger
        self.activity_dir = activity_dir
        self.environ = environ
        self.default_region = default_region
        self.clients = {
            (j.name, s.name): StepClient(j, s) for j in config.journeys for s in j.steps
        }
        # The long-lived worker sends on a thread per step (journeys/dispatch.py); a sensor
        # tick, the demo and tests send within the step.
        self._dispatcher = Dispatcher(background=background_dispatch)
        self._triggers: dict[str, list[Journey]] = {}
        self._exits: dict[str, list[Journey]] = {}
        for journey in config.journeys:
            for name in journey.trigger.events:
                self._triggers.setdefault(name, []).append(journey)
            for name in journey.exit.events:
                self._exits.setdefault(name, []).append(journey)
        self._run_id = f"fastpath-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._journal: list[dict[str, Any]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._dirty: dict[str, Instance] = {}
        # Rows for the outbox (new intents) and answers to fold, written by the next _save.
        self._intents: list[list[Any]] = []
        self._answers: list[list[Any]] = []
        # Intents committed by this step, in the outbox query's columns (_DISPATCH_COLUMNS), for
        # _dispatch to send without reading them back; and when the outbox must be read
        # instead: at start (rows of an earlier run), when a retry falls due, when an insert
        # was ignored (a row by that key existed, whose status the outbox knows).
        self._ready: list[tuple[Any, ...]] = []
        self._scan_at: datetime = datetime.min
        # journey -> publish seq up to which its audience's change log was applied, to commit
        self._audience_marks: dict[str, int] = {}
        self._dirty_lines: set[str] = set()
        self._seq = 0
        # In-memory DuckDB that evaluates step conditions (SQL) over due instances' contexts.
        self._sql = duckdb.connect()
        self._feed: FeedWriter | None = None  # write-behind, see write_behind()
        # The activity feed is written from the rows each commit makes (journeys/feed.py).
        self._feed_queue = FeedQueue(con, enabled=activity_dir is not None)
        self._load()

    # ---- loading and saving -------------------------------------------------------------
    def _load(self) -> None:
        rows = self.con.execute(
            f"select {', '.join(INSTANCE_COLUMNS)} from {CATALOG}.instances "
            "where status = 'active'"
        ).fetchall()
        self.active: dict[tuple[str, str], Instance] = {}
        for row in rows:
            inst = Instance(*row)
            self.active[(inst.journey, inst.entry_key)] = inst
        self.counts: dict[tuple[str, str], int] = {
            (j, k): int(n)
            for j, k, n in self.con.execute(
                f"select journey, entry_key, count(*) from {CATALOG}.instances "
                "group by journey, entry_key"
            ).fetchall()
        }
        self.lines: dict[str, dict[str, list[Any]]] = {}
        for iid, sku, name, price, qty in self.con.execute(
            f"select l.instance_id, sku, name, price, quantity from {CATALOG}.cart_lines l "
            f"join {CATALOG}.instances i using (instance_id) where i.status = 'active'"
        ).fetchall():
            self.lines.setdefault(iid, {})[sku] = [name, price, qty]
        self.by_subject: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.by_id: dict[str, Instance] = {i.instance_id: i for i in self.active.values()}
        # (due, instance id) for every active instance: finding what is due costs what is due,
        # not the number of instances. Entries go stale when a restart or a step moves the
        # due time; a popped entry counts only if it still matches the instance.
        self._due: list[tuple[datetime, str]] = [
            (i.next_due_at, i.instance_id) for i in self.active.values() if i.next_due_at]
        heapq.heapify(self._due)
        for key, inst in self.active.items():
            self._index(key, inst)
        row = self.con.execute(
            f"select received_at, files from {CATALOG}.watermarks where source = ?",
            [self.source.name],
        ).fetchone()
        self._mark: datetime | None = row[0] if row else None
        names = [n for (n,) in self.con.execute(
            f"select name from {CATALOG}.source_files where source = ?", [self.source.name])]
        if not names and row and row[1]:
            names = json.loads(row[1])  # a state file from before source_files
        self.source.restore(names)
        (self._seq,) = self.con.execute(
            f"select count(*) from {CATALOG}.journal"
        ).fetchone() or (0,)
        self._ready = []
        self._scan_at = datetime.min
        # Instances that ended in a step that crashed before cancelling their pending sends.
        self._ended: set[str] = {
            r[0] for r in self.con.execute(
                f"""select distinct o.instance_id from {CATALOG}.outbox o
                join {CATALOG}.instances i on i.instance_id = o.instance_id
                where o.status = 'pending' and o.action in ('send', 'add')
                  and i.status = 'exited'"""
            ).fetchall()
        }
        self._feed_queue.refill()

    def _schedule(self, inst: Instance) -> None:
        if inst.next_due_at is not None and inst.status == "active":
            heapq.heappush(self._due, (inst.next_due_at, inst.instance_id))

    def _index(self, key: tuple[str, str], inst: Instance) -> None:
        for kind in SUBJECT_KINDS:
            value = getattr(inst, kind)
            if value:
                self.by_subject.setdefault((kind, value), set()).add(key)

    def _unindex(self, key: tuple[str, str], inst: Instance) -> None:
        """An ended instance leaves the subject index: the worker runs for weeks, and every
        instance that ever ran would otherwise stay in it."""
        for kind in SUBJECT_KINDS:
            value = getattr(inst, kind)
            keys = self.by_subject.get((kind, value)) if value else None
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_subject[(kind, value)]

    def watermark(self) -> datetime | None:
        """The received_at up to which events were processed (committed)."""
        return self._mark

    def _save(self, watermark: datetime | None) -> None:
        """Commit instance changes, intents, answers, journal, deliveries and the watermark in
        one transaction (a WAL append without fsync: see journeys/state.py)."""
        if not (self._dirty or self._dirty_lines or self._journal or self._deliveries
                or self._intents or self._answers or self._audience_marks
                or watermark is not None):
            return
        con = self.con
        con.execute("begin")
        try:
            ready: list[tuple[Any, ...]] = []
            if self._intents:
                before = con.total_changes
                con.executemany(
                    f"insert or ignore into {CATALOG}.outbox ({', '.join(_OUTBOX_COLUMNS)}) "
                    f"values ({', '.join('?' * len(_OUTBOX_COLUMNS))})", self._intents)
                if con.total_changes - before == len(self._intents):
                    ready = [_dispatch_row(i) for i in self._intents]
                else:
                    self._scan_at = datetime.min
            if self._answers:
                con.executemany(
                    f"""update {CATALOG}.outbox set status = ?, attempts = ?, response_code = ?,
                        error = ?, external_id = ?, next_attempt_at = ?, updated_at = ?
                    where idempotency_key = ?""",
                    [(*a[1:], utc_now(), a[0]) for a in self._answers])
            if self._dirty:
                con.executemany(
                    f"insert or replace into {CATALOG}.instances ({', '.join(INSTANCE_COLUMNS)})"
                    f" values ({', '.join('?' * len(INSTANCE_COLUMNS))})",
                    [instance_row(i) for i in self._dirty.values()])
            if self._dirty_lines:
                ids = list(self._dirty_lines)
                con.executemany(f"delete from {CATALOG}.cart_lines where instance_id = ?",
                                [(i,) for i in ids])
                con.executemany(f"insert into {CATALOG}.cart_lines values (?, ?, ?, ?, ?)",
                                [(iid, sku, *vals) for iid in ids
                                 for sku, vals in self.lines.get(iid, {}).items()])
            journal = [_JOURNAL_ROW(r) for r in self._journal]
            if journal:
                con.executemany(
                    f"insert or ignore into {CATALOG}.journal ({', '.join(JOURNAL_COLUMNS)}) "
                    f"values ({', '.join('?' * len(JOURNAL_COLUMNS))})", journal)
            deliveries = [_DELIVERY_ROW(r) for r in self._deliveries]
            if deliveries:
                con.executemany(
                    f"insert into {CATALOG}.deliveries ({', '.join(DELIVERY_COLUMNS)}) "
                    f"values ({', '.join('?' * len(DELIVERY_COLUMNS))})", deliveries)
            if watermark is not None:
                added, floor = self.source.checkpoint()
                if floor is not None:
                    con.execute(f"delete from {CATALOG}.source_files where source = ? "
                                "and name < ?", [self.source.name, floor])
                if added:
                    con.executemany(
                        f"insert or ignore into {CATALOG}.source_files values (?, ?)",
                        [(self.source.name, n) for n in added])
                con.execute(
                    f"insert or replace into {CATALOG}.watermarks values (?, ?, null, null)",
                    [self.source.name, watermark],
                )
            for journey_name, seq in self._audience_marks.items():
                con.execute(
                    f"insert or replace into {CATALOG}.watermarks values (?, null, ?, null)",
                    [f"audience:{journey_name}", seq],
                )
            con.execute("commit")
            self._ready += ready
            self._feed_queue.committed("journal", journal)
            self._feed_queue.committed("deliveries", deliveries)
            if watermark is not None:
                self._mark = watermark
        except BaseException:
            con.execute("rollback")
            self._load()  # memory follows the database, never the other way round
            raise
        finally:
            self._intents.clear()
            self._answers.clear()
            self._audience_marks.clear()
            self._dirty.clear()
            self._dirty_lines.clear()
            self._journal.clear()
            self._deliveries.clear()

    # ---- the step -----------------------------------------------------------------------
    def step(self) -> StepResult:
        started = time.perf_counter()
        result = StepResult()
        index = self.profiles.refresh()
        now = self.clock.now()
        self._fold_sent(now, result)  # answers that came back since the last step
        mark = self._ingest(index, now, result, self._mark)
        self._audience_changes(now, result)
        self._plan(index, now, result)
        # Exits win races: what landed while planning is read before anything is sent. What
        # it starts that is due at once is planned in this step too (a few rounds at most),
        # instead of being written now and again, planned, by the next step; the last read
        # always follows the last plan. One commit then makes the intents, the exits, the
        # answers folded above and the watermark durable together, before any request is made.
        for _ in range(REPLAN_ROUNDS):
            newer = self._ingest(index, now, result, mark or self._mark)
            if newer is None:
                break
            mark = newer
            now = self.clock.now()
            if not (self._due and self._due[0][0] <= now):
                break
            self._plan(index, now, result)
        self._save(mark)
        self._cancel_exited(now, result)
        self._dispatch(now, result)
        mark = self.watermark()
        result.watermark = mark.isoformat() if mark else None
        result.seconds = time.perf_counter() - started
        return result

    def wait(self, interval: float, longest: float) -> None:
        """Idle until there may be work: events landed or answers came back (descriptors
        polled), the next step or retry falls due, or at most `longest` seconds; `interval`
        when the source cannot signal new events. Measured at 10 events/s, a worker that
        stepped every 2 ms used a fifth of a core finding nothing (19 ms of CPU per event;
        6 ms waiting like this)."""
        timeout = longest if self.source.signals() else min(interval, longest)
        if self._due or self._scan_at != datetime.max:
            now = self.clock.now()
            if self._due:
                timeout = min(timeout, (self._due[0][0] - now).total_seconds())
            if self._scan_at != datetime.max:
                timeout = min(timeout, (self._scan_at - now).total_seconds())
        wake = self._dispatcher.wake_fd
        self.source.wait(max(0.0, timeout), () if wake is None else (wake,))
        self._dispatcher.clear_wake()

    def run_until_idle(self, max_steps: int = 1000) -> StepResult:
        total = StepResult()
        for _ in range(max_steps):
            one = self.step()
            total.add(one)
            if not one.active:
                break
        return total

    def _ingest(self, index: ProfileIndex, now: datetime, result: StepResult,
                after: datetime | None) -> datetime | None:
        """Apply events received after `after` to instances (in memory); returns the watermark
        to commit, or None when nothing new arrived."""
        table = self.source.read(after, None if self.clock.is_wall else now)
        if table.num_rows == 0:
            return None
        events = [e for e in (parse_event(r, self.default_region) for r in table.to_pylist())
                  if e is not None]
        events.sort(key=lambda e: (e.at, e.received_at, e.message_id))
        for event in events:
            profile_id = index.resolve(event.identifiers)
            for journey in self._exits.get(event.name or "", ()):
                result.exited += self._exit(journey, event, profile_id, now)
            for journey in self._triggers.get(event.name or "", ()):
                self._trigger(journey, event, profile_id, index, now, result)
        result.events += table.num_rows
        newest = table.column("received_at")[-1].as_py()
        # A late-listed file may hold rows older than the watermark: it never moves back.
        return max(newest, after) if after else newest

    def _audience_changes(self, now: datetime, result: StepResult) -> None:
        """Audience-entry triggers: members who entered since the journey's cursor start it,
        members who left end it. The first look only places the cursor (turning a journey on
        does not message everyone already in the audience); a cursor older than the change
        log's reach moves to the newest publish, entering no one (said in the journal)."""
        manifest = self.profiles.manifest
        journeys = [j for j in self.journeys.values() if j.trigger.audience]
        if manifest is None or not journeys:
            return
        for journey in journeys:
            audience = str(journey.trigger.audience).split(".")[-1]
            row = self.con.execute(
                f"select seq from {CATALOG}.watermarks where source = ?",
                [f"audience:{journey.name}"],
            ).fetchone()
            cursor = row[0] if row else None
            if cursor is not None and cursor >= manifest.seq:
                continue
            files = None if cursor is None else manifest.changes_after(audience, cursor)
            self._audience_marks[journey.name] = manifest.seq
            for change in files or ():
                table = pq.read_table(self.profiles.published_dir / change.path,
                                      columns=["profile_id", snapshots.CHANGE])
                for pid, kind in zip(table.column(0).to_pylist(), table.column(1).to_pylist(),
                                     strict=True):
                    key = (journey.name, f"profile_id:{pid}")
                    inst = self.active.get(key)
                    if kind == "remove" and inst is not None:
                        self._end(inst, "exited", f"left {audience}", now, None, now)
                        result.exited += 1
                    elif kind == "upsert" and inst is None:
                        event = Event(message_id=f"{audience}:{change.seq}:{pid}",
                                      name=f"entered {audience}",
                                      at=now, received_at=now, identifiers={},
                                      first_name=None, properties={})
                        self._trigger(journey, event, str(pid), self.profiles.index, now,
                                      result)

    def _subject(self, event: Event, profile_id: str | None) -> tuple[str, str]:
        if profile_id:
            return "profile_id", profile_id
        for kind in ("user_id", "email", "anonymous_id"):
            value = event.identifiers.get(kind)
            if value:
                return kind, value
        return "message_id", event.message_id

    def _exit(self, journey: Journey, event: Event, profile_id: str | None,
              now: datetime) -> int:
        keys: set[tuple[str, str]] = set()
        key_value = event.properties.get(journey.trigger.key) if journey.trigger.key else None
        if journey.exit.match == "key" and key_value is not None:
            keys.add((journey.name, str(key_value)))
        else:
            lookups = [("profile_id", profile_id), *event.identifiers.items()]
            for kind, value in lookups:
                if value:
                    keys |= {k for k in self.by_subject.get((kind, value), ()) if
                             k[0] == journey.name}
        ended = 0
        for key in keys:
            inst = self.active.get(key)
            if inst is not None:
                self._end(inst, "exited", f"{event.name}", event.at, event.message_id, now)
                ended += 1
        return ended

    def _end(self, inst: Instance, status: str, reason: str, at: datetime,
             message_id: str | None, now: datetime) -> None:
        inst.status, inst.end_reason, inst.ended_at = status, reason, at
        inst.next_due_at, inst.updated_at = None, utc_now()
        self.active.pop((inst.journey, inst.entry_key), None)
        self.by_id.pop(inst.instance_id, None)
        self._unindex((inst.journey, inst.entry_key), inst)
        if status == "exited":  # a completed instance's last send is still to go out
            self._ended.add(inst.instance_id)
            self._dispatcher.withdraw(inst.instance_id)
        self._dirty[inst.instance_id] = inst
        self._note(inst, "exited" if status == "exited" else "completed", None, reason, at,
                   message_id=message_id)
        journey = self.journeys[inst.journey]
        for step_name in members(inst):
            step = next(s for s in journey.steps if s.name == step_name)
            self._intent(inst, step, Action.REMOVE, {}, at, None, now)
        inst.memberships = None

    def _trigger(self, journey: Journey, event: Event, profile_id: str | None,
                 index: ProfileIndex, now: datetime, result: StepResult) -> None:
        subject = self._subject(event, profile_id)
        if journey.trigger.key:
            value = event.properties.get(journey.trigger.key)
            if value in (None, ""):
                return  # not this journey's event (a Product Added without a cart)
            entry_key = str(value)
        else:
            entry_key = f"{subject[0]}:{subject[1]}"
        key = (journey.name, entry_key)
        inst = self.active.get(key)
        if inst is None:
            seen = self.counts.get(key, 0)
            if seen and not journey.reentry:
                return
            self.counts[key] = seen + 1
            inst = Instance(
                instance_id=f"{journey.name}:{entry_key}:{seen + 1}", journey=journey.name,
                entry_key=entry_key, identifier_type=subject[0], identifier_value=subject[1],
                profile_id=profile_id, user_id=event.identifiers.get("user_id"),
                anonymous_id=event.identifiers.get("anonymous_id"),
                email=event.identifiers.get("email"), phone=event.identifiers.get("phone"),
                first_name=event.first_name, holdout=in_holdout(journey, subject),
                status="active", entered_at=event.at, triggered_at=event.at,
                trigger_message_id=event.message_id, trigger_received_at=event.received_at,
                next_step=0, next_due_at=event.at + journey.steps[0].after, memberships=None,
                ended_at=None, end_reason=None, updated_at=utc_now(),
            )
            self.active[key] = inst
            self.by_id[inst.instance_id] = inst
            self._note(inst, "entered", None, event.name, event.at, message_id=event.message_id)
            result.entered += 1
        else:
            if event.at < inst.triggered_at:
                return  # a late copy of an older change: the timer only moves forward
            inst.triggered_at = event.at
            inst.trigger_message_id = event.message_id
            inst.trigger_received_at = event.received_at
            if inst.next_step < len(journey.steps):
                inst.next_due_at = event.at + journey.steps[inst.next_step].after
            for kind in ("user_id", "anonymous_id", "email", "phone"):
                if getattr(inst, kind) is None and event.identifiers.get(kind):
                    setattr(inst, kind, event.identifiers[kind])
            inst.first_name = inst.first_name or event.first_name
            inst.profile_id = inst.profile_id or profile_id
            self._note(inst, "restarted", None, event.name, event.at, message_id=event.message_id)
            result.restarted += 1
        inst.updated_at = utc_now()
        self._index(key, inst)
        self._schedule(inst)
        self._dirty[inst.instance_id] = inst
        if event.name in CART_EVENTS:
            fold_cart(self.lines.setdefault(inst.instance_id, {}), event)
            self._dirty_lines.add(inst.instance_id)

    # ---- planning due steps -------------------------------------------------------------
    def _plan(self, index: ProfileIndex, now: datetime, result: StepResult) -> None:
        due: dict[str, Instance] = {}
        while self._due and self._due[0][0] <= now:
            at, instance_id = heapq.heappop(self._due)
            inst = self.by_id.get(instance_id)
            if inst is not None and inst.next_due_at == at:
                due[instance_id] = inst
        if not due:
            return
        groups: dict[tuple[str, int], list[Instance]] = {}
        for inst in due.values():  # one step per instance per micro-batch (_advance spaces)
            groups.setdefault((inst.journey, inst.next_step), []).append(inst)
        for (journey_name, step_index), insts in groups.items():
            self._plan_group(self.journeys[journey_name], step_index, insts, index, now, result)

    def _plan_group(self, journey: Journey, step_index: int, insts: list[Instance],
                    index: ProfileIndex, now: datetime, result: StepResult) -> None:
        if step_index >= len(journey.steps):  # past the last step: membership expiry
            for inst in insts:
                self._end(inst, "completed", "journey finished", now, None, now)
            return
        step = journey.steps[step_index]
        client = self.clients[(journey.name, step.name)]
        contexts = [self._context(inst, journey, step, index) for inst in insts]
        verdicts = step_conditions(self._sql, journey, step, contexts)
        for inst, ctx, ok in zip(insts, contexts, verdicts, strict=True):
            due_at = inst.next_due_at or now
            profile = ctx.get("_profile")
            if (journey.exit.on_profile_order and profile and profile.get("last_order_at")
                    and profile["last_order_at"] >= inst.entered_at):
                self._end(inst, "exited", "order in warehouse", now, None, now)
                result.exited += 1
                continue
            reason = blocked(inst, step, client, ctx, ok)
            if reason is not None:
                event, why = reason
                self._note(inst, event, step.name, why, now, due_at=due_at)
                if event == "step_held_out":
                    result.held_out += 1
                else:
                    result.skipped += 1
                self._advance(inst, journey, step_index, now)
                continue
            try:
                payload = client.fields(ctx)
            except TemplateRenderError as exc:
                self._note(inst, "step_failed", step.name, str(exc), now, due_at=due_at)
                result.failed += 1
                self._advance(inst, journey, step_index, now)
                continue
            action = Action.SEND if step.kind == StepKind.SEND else Action.ADD
            key = f"{inst.instance_id}:{step.name}"
            capped = (step.kind == StepKind.SEND and self.ledger is not None and not
                      self.ledger.reserve(instance_cap_subject(inst), client.channel.value, now,
                                          key, f"journey:{journey.name}"))
            if capped:
                self._note(inst, "step_capped", step.name, f"frequency cap on "
                           f"{client.channel.value}", now, due_at=due_at)
                self._delivery(inst, step, client, key, action.value, "capped", 0, None,
                               "frequency cap", None, now)
                result.capped += 1
            else:
                ready = inst.trigger_received_at if step.after == timedelta(0) else due_at
                self._intent(inst, step, action, payload, due_at, ready, now)
                if action == Action.ADD:
                    inst.memberships = ",".join([*members(inst), step.name])
                result.planned += 1
            self._advance(inst, journey, step_index, now)

    def _advance(self, inst: Instance, journey: Journey, step_index: int, now: datetime) -> None:
        taken = journey.steps[step_index]
        inst.next_step = step_index + 1
        if inst.next_step < len(journey.steps):
            # now >= the taken step's due time, so this is its own due time when on time and
            # keeps the gap when the step went out late.
            inst.next_due_at = now + (journey.steps[inst.next_step].after - taken.after)
        else:
            keep = [s.keep_for for s in journey.steps if s.name in members(inst) and s.keep_for]
            inst.next_due_at = now + max(keep) if keep else now
        inst.updated_at = utc_now()
        self._schedule(inst)
        self._dirty[inst.instance_id] = inst
        if inst.next_step >= len(journey.steps) and not members(inst):
            self._end(inst, "completed", "journey finished", now, None, now)

    def _context(self, inst: Instance, journey: Journey, step: Step,
                 index: ProfileIndex) -> dict[str, Any]:
        if inst.profile_id is None:
            inst.profile_id = index.resolve({"user_id": inst.user_id, "email": inst.email,
                                             "phone": inst.phone,
                                             "anonymous_id": inst.anonymous_id})
            if inst.profile_id:  # exits that resolve to the profile find it from now on
                self._index((inst.journey, inst.entry_key), inst)
        return step_context(inst, journey, step, index.profile(inst.profile_id), index.columns,
                            self.lines.get(inst.instance_id, {}))

    # ---- outbox and dispatch ------------------------------------------------------------
    def _intent(self, inst: Instance, step: Step, action: Action, payload: Mapping[str, Any],
                due_at: datetime, ready_at: datetime | None, now: datetime) -> None:
        client = self.clients[(inst.journey, step.name)]
        key = f"{inst.instance_id}:{step.name}" + (":remove" if action == Action.REMOVE else "")
        if action == Action.REMOVE:
            # Removal matches the member the add sent: reuse its identifiers.
            row = self.con.execute(
                f"select fields, status from {CATALOG}.outbox where idempotency_key = ?",
                [f"{inst.instance_id}:{step.name}"],
            ).fetchone()
            if row is None or row[1] != "delivered":
                return  # never added (a pending add is cancelled instead)
            payload = json.loads(row[0])
        stamp = utc_now()
        self._intents.append(
            [key, inst.instance_id, inst.journey, step.name, action.value, client.channel.value,
             step.action.destination.kind, inst.profile_id, inst.identifier_type,
             inst.identifier_value, orjson.dumps(payload).decode(), "pending", 0, due_at,
             ready_at, now, None, None, None, stamp, stamp]
        )

    def _cancel_exited(self, now: datetime, result: StepResult) -> None:
        """Pending sends and adds of instances that exited are cancelled, never sent."""
        if not self._ended:
            return
        # A row on its way to a destination is settled by its answer: sent, or withheld and
        # then cancelled here once it is back.
        flying = {i for i in self._ended if self._dispatcher.instance_flying(i)}
        ended, self._ended = sorted(self._ended - flying), flying
        if not ended:
            return
        rows = []
        self.con.execute("begin")  # one commit for all of them
        try:
            for instance_id in ended:
                rows += self.con.execute(
                    f"""update {CATALOG}.outbox set status = 'cancelled', updated_at = ?
                    where instance_id = ? and status = 'pending' and action in ('send', 'add')
                    returning instance_id, step""",
                    [utc_now(), instance_id],
                ).fetchall()
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            self._ended |= set(ended)
            raise
        if rows and self._ready:
            gone = {instance_id for instance_id, _ in rows}
            self._ready = [r for r in self._ready
                           if r[1] not in gone or r[4] not in ("send", "add")]
        for instance_id, step in rows:
            inst = self._instance(instance_id)
            self._note(inst, "step_cancelled", step, inst.end_reason or "ended", now)
            result.cancelled += 1
        if rows:
            self._save(None)

    def _instance(self, instance_id: str) -> Instance:
        inst = self.by_id.get(instance_id)
        if inst is not None:
            return inst
        row = self.con.execute(
            f"select {', '.join(INSTANCE_COLUMNS)} from {CATALOG}.instances "
            "where instance_id = ?", [instance_id]
        ).fetchone()
        assert row is not None
        return Instance(*row)

    def _dispatch(self, now: datetime, result: StepResult) -> None:
        rows, self._ready = self._ready, []
        if now >= self._scan_at:
            rows = self.con.execute(
                f"""select {', '.join(_DISPATCH_COLUMNS)} from {CATALOG}.outbox
                where status = 'pending' and next_attempt_at <= ?
                order by created_at, idempotency_key""",
                [now],
            ).fetchall()
            # Rows in flight are pending and due too: their answers set what comes next.
            later = self.con.execute(
                f"select min(next_attempt_at) from {CATALOG}.outbox "
                "where status = 'pending' and next_attempt_at > ?", [now]).fetchone()
            self._scan_at = later[0] if later and later[0] is not None else datetime.max
        groups: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
        for row in rows:
            if not self._dispatcher.flying(row[0]):
                groups.setdefault((row[2], row[3], row[4]), []).append(row)
        for (journey, step_name, action), items in groups.items():
            client = self.clients[(journey, step_name)]
            destination = client.destination(self.environ)
            size = client.cls.max_batch_size
            for start in range(0, len(items), size):
                chunk = items[start:start + size]
                records = [
                    Record(profile_id=r[9] or r[11] or r[1], action=Action(action),
                           fields=json.loads(r[5]), idempotency_key=r[0])
                    for r in chunk
                ]
                self._dispatcher.submit(client, destination, journey, step_name, action, chunk,
                                        records)
        if not self._dispatcher.background:
            self._fold_sent(now, result)
            self._save(None)

    def _fold_sent(self, now: datetime, result: StepResult) -> None:
        for sent in self._dispatcher.completed():
            if sent.error is not None:
                raise sent.error
            if sent.rows:
                self._fold(sent.journey, sent.step, sent.rows, sent.answers, now, result)

    def finish(self, timeout: float = 30.0) -> StepResult:
        """Wait for the sends still on their way and record their answers (the worker, on
        its way out). What does not come back in time stays pending and is sent again, with
        the same idempotency key, on the next run."""
        result = StepResult()
        if self._dispatcher.busy:
            self._dispatcher.wait(timeout)
            now = self.clock.now()
            self._fold_sent(now, result)
            self._save(None)
            self._cancel_exited(now, result)
        return result

    def _fold(self, journey: str, step_name: str, chunk: list[tuple[Any, ...]],
              answers: Iterable[RecordResult], now: datetime, result: StepResult) -> None:
        by_key = {a.idempotency_key: a for a in answers}
        step = next(s for s in self.journeys[journey].steps if s.name == step_name)
        client = self.clients[(journey, step_name)]
        answered = utc_now()
        for row in chunk:
            key, instance_id, _, _, action, _, attempts, due_at, ready_at = row[:9]
            answer = by_key.get(key) or RecordResult(key, Outcome.RETRY, None, "no answer")
            attempt = attempts + 1
            inst = self._instance(instance_id)
            if answer.outcome == Outcome.DELIVERED:
                status = "delivered"
                latency = ((answered - ready_at).total_seconds() * 1000.0
                           if self.clock.is_wall and ready_at is not None else None)
                if action != Action.REMOVE.value:
                    self._note(inst, "step_sent", step_name, None, now, due_at=due_at,
                               latency_ms=latency)
                result.sent += 1
            elif answer.outcome == Outcome.REJECTED and attempt >= step.action.max_attempts:
                status = "dead"
                self._note(inst, "step_failed", step_name, answer.error, now, due_at=due_at)
                result.failed += 1
            else:
                status = "pending"
                result.retrying += 1
            backoff = RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS)) - 1]
            if status == "pending":
                self._scan_at = min(self._scan_at, now + timedelta(seconds=backoff))
            self._answers.append([key, status, attempt, answer.status_code, answer.error,
                                  answer.external_id, now + timedelta(seconds=backoff)])
            self._delivery(inst, step, client, key, action,
                           "retry" if status == "pending" and answer.outcome == Outcome.RETRY
                           else ("rejected" if status == "pending" else status),
                           attempt, answer.status_code, answer.error, answer.external_id, now)

    # ---- the record of decisions ----------------------------------------------------------
    def _note(self, inst: Instance, event: str, step: str | None, reason: str | None,
              at: datetime, *, message_id: str | None = None, due_at: datetime | None = None,
              latency_ms: float | None = None) -> None:
        self._seq += 1
        self._journal.append({
            "event_id": f"{inst.instance_id}:{event}:{step or ''}:{self._seq}",
            "journey": inst.journey, "instance_id": inst.instance_id,
            "entry_key": inst.entry_key, "profile_id": inst.profile_id,
            "identifier_type": inst.identifier_type, "identifier_value": inst.identifier_value,
            "holdout": inst.holdout, "event": event, "step": step, "reason": reason,
            "trigger_message_id": message_id or inst.trigger_message_id, "occurred_at": at,
            "due_at": due_at, "latency_ms": latency_ms, "recorded_at": utc_now(),
        })

    def _delivery(self, inst: Instance, step: Step, client: StepClient, key: str, action: str,
                  status: str, attempt: int, code: int | None, error: str | None,
                  external_id: str | None, at: datetime) -> None:
        self._deliveries.append({
            "source": "journey", "flow": f"{inst.journey}.{step.name}", "journey": inst.journey,
            "step": step.name, "channel": client.channel.value,
            "destination": step.action.destination.kind, "run_id": self._run_id,
            "idempotency_key": key, "profile_id": inst.profile_id,
            "identifier_type": inst.identifier_type, "identifier_value": inst.identifier_value,
            "action": action, "status": status, "attempt": attempt, "response_code": code,
            "error": error, "external_id": external_id, "attempted_at": at,
        })

    def write_behind(self, state_path: Path) -> None:
        """Hand feed files and checkpoints to a thread (the long-lived worker; journeys/feed.py):
        from now on `flush_activity(wait=False)` never waits for the disk."""
        self.con.execute("pragma wal_autocheckpoint=0")
        self._feed = FeedWriter(self.activity_dir, state_path)

    def flush_activity(self, *, wait: bool = True) -> int:
        """Append the journal rows and deliveries not yet in the activity feed to it; returns
        the rows handed over. With write-behind and `wait` false the files are written on the
        feed thread and the marks moved at a later call, once durable."""
        try:
            if self._feed is not None:
                for done in self._feed.finished(block=wait):
                    self._feed_queue.mark(done)
                if self._feed.busy:
                    return 0
            batches = self._feed_queue.take()
            if self._feed is not None and not wait:
                self._feed.submit(batches)  # a checkpoint even when there are no rows
                return sum(len(b.rows) for b in batches)
            for batch in batches:
                # A crash between the append and the mark appends these rows again next time:
                # readers deduplicate on the contract key.
                assert self.activity_dir is not None
                batch.write(self.activity_dir)
                self._feed_queue.mark(batch)
        except BaseException:
            self._feed_queue.refill()  # a failed write's rows go again, read from the state
            raise
        return sum(len(b.rows) for b in batches)

    def close(self) -> None:
        self._dispatcher.close()
        for client in self.clients.values():
            client.close()
        self._sql.close()
        self.profiles.close()
        if self._feed is not None:
            self._feed.close()


_OUTBOX_COLUMNS = (
    "idempotency_key", "instance_id", "journey", "step", "action", "channel", "destination",
    "profile_id", "identifier_type", "identifier_value", "fields", "status", "attempts",
    "due_at", "ready_at", "next_attempt_at", "response_code", "error", "external_id",
    "created_at", "updated_at",
)


# What _dispatch sends from, read from the outbox or taken from a committed intent.
_DISPATCH_COLUMNS = (
    "idempotency_key", "instance_id", "journey", "step", "action", "fields", "attempts",
    "due_at", "ready_at", "profile_id", "identifier_type", "identifier_value",
)
_dispatch_row = operator.itemgetter(*(_OUTBOX_COLUMNS.index(c) for c in _DISPATCH_COLUMNS))
