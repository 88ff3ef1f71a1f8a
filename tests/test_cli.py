"""The terminal client, `manage.py batches start|follow|list|cancel`, against a real worker process:
the exit codes a script branches on, the plain lines a cron log gets, JSON for programs."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from batches.engine import state
from batches.models import Batch, BatchStatus
from batches.services import start_batch
from tests.support import BASE_DIR, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"RECORDS_ITEM_DELAY_MS": "0", "RECORDS_FAIL_EVERY": "97"}
SLOW = {"RECORDS_ITEM_DELAY_MS": "30", "RECORDS_FAIL_EVERY": "97"}


def batches_command(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "batches", *args],
        cwd=BASE_DIR,
        env=subprocess_env(),
        text=True,
        stdout=popen.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        **popen,
    )


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    process = batches_command(*args)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.both_brokers  # the client sends on the broker too
def test_start_and_follow_to_the_end_in_plain_lines_exits_0(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=600)
    make_clerk("alice")
    worker_process(**{**FAST, "RECORDS_ITEM_DELAY_MS": "5"})

    done = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice", "--follow", "--every", "0.5")

    assert done.returncode == 0, done.stderr
    batch = Batch.objects.get()
    lines = done.stdout.splitlines()
    assert lines[0] == f"Batch {batch.pk} started: mark_records on {batch.scope_label}."
    assert all(line.startswith(f"Batch {batch.pk} ") for line in lines), "plain lines, no terminal codes"
    assert "\x1b" not in done.stdout
    assert lines[-1].startswith(f"Batch {batch.pk} finished: 600 of 600 records worked, 594 done, 6 failed in ")
    assert batch.status == BatchStatus.FINISHED


def test_json_prints_the_apis_batch_object(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=300)
    make_clerk("alice")
    worker_process(**FAST)

    started = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice", "--json")
    assert started.returncode == 0, started.stderr
    body = json.loads(started.stdout)
    assert body["operation"] == "mark_records" and body["links"]["self"] == f"/api/batches/{body['id']}"

    followed = run("follow", str(body["id"]), "--json")
    assert followed.returncode == 0, followed.stderr
    end = json.loads(followed.stdout)
    assert (end["id"], end["status"], end["done"], end["failed"]) == (body["id"], "finished", 297, 3)

    listed = run("list", "--json", "--user", "alice")
    assert [item["id"] for item in json.loads(listed.stdout)] == [body["id"]]


def test_a_second_start_on_a_busy_scope_says_so_and_follows_the_first(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=600)
    make_clerk("alice")
    make_clerk("bob")
    worker_process(**{**FAST, "RECORDS_ITEM_DELAY_MS": "5"})
    first = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice")
    assert first.returncode == 0, first.stderr
    batch = Batch.objects.get()

    second = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "bob", "--follow", "--every", "1")

    assert Batch.objects.count() == 1
    assert second.returncode == 0, second.stderr
    assert f"Batch {batch.pk} is already" in second.stdout.splitlines()[0]
    assert "no new batch was started" in second.stdout
    assert second.stdout.splitlines()[-1].startswith(f"Batch {batch.pk} finished: 600 of 600 records worked")


def follow_a_slow_batch(worker_process, make_ledger, make_clerk, *, every: str):
    """`batches start … --follow` by alice, of 3,000 records that a slow worker takes minutes over."""
    ledger = make_ledger(records=3000)
    make_clerk("alice")
    worker_process(**SLOW)
    return batches_command(
        "start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice", "--follow", "--every", every
    )


def test_a_batch_cancelled_while_followed_exits_1(worker_process, make_ledger, make_clerk):
    follower = follow_a_slow_batch(worker_process, make_ledger, make_clerk, every="0.5")
    batch = wait_until(lambda: Batch.objects.filter(status=BatchStatus.RUNNING).first(), what="the batch to run")

    cancelled = run("cancel", str(batch.pk), "--user", "alice")
    out, err = follower.communicate(timeout=60)

    assert cancelled.returncode == 0 and f"Batch {batch.pk} cancelled" in cancelled.stdout
    assert follower.returncode == 1, err
    assert out.splitlines()[-1].startswith(f"Batch {batch.pk} cancelled: ")


def test_following_a_failed_batch_exits_1_and_says_why(make_ledger, make_clerk):
    ledger = make_ledger(records=10)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    state.end(batch.pk, BatchStatus.FAILED, error="Cannot resume: no progress after 8 recoveries.")

    followed = run("follow", str(batch.pk))

    assert followed.returncode == 1
    assert followed.stdout.strip().endswith("Cannot resume: no progress after 8 recoveries.")


def test_ctrl_c_detaches_without_cancelling_and_says_how_to_reattach(worker_process, make_ledger, make_clerk):
    follower = follow_a_slow_batch(worker_process, make_ledger, make_clerk, every="0.2")
    assert follower.stdout is not None
    follower.stdout.readline()  # "Batch N started ..."
    follower.stdout.readline()  # the first progress line: it is following
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)

    batch = Batch.objects.get()
    assert follower.returncode == 130
    assert f"python manage.py batches follow {batch.pk}" in err
    assert batch.is_active, "detaching does not cancel"


def read_terminal(*args: str) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, as a person would: its exit code and what it drew."""
    controller, terminal = pty.openpty()
    process = batches_command(*args, stdout=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command has ended
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(controller)
    return process.returncode, output.decode(errors="replace")


def test_on_a_terminal_it_draws_a_progress_bar(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=600)
    make_clerk("alice")
    worker_process(**{**FAST, "RECORDS_ITEM_DELAY_MS": "5"})

    code, text = read_terminal("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice", "--follow")

    assert code == 0
    assert "━" in text, "rich's bar"
    assert "600/600" in text and "6 failed" in text


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["start", "no_such_op", "x=1", "--user", "alice"], 2, "Unknown operation"),
        (["start", "mark_records", "ledger_id", "--user", "alice"], 2, "key=value"),
        (["start", "mark_records", "ledger_id=abc", "--user", "alice"], 2, "Bad parameters"),
        (["start", "mark_records", "ledger_id=1", "--user", "nobody"], 2, "No user"),
        (["start", "mark_records", "ledger_id=999999", "--user", "alice"], 3, "There is no ledger 999999"),
        (["start", "mark_records", "ledger_id={ledger}", "--user", "mallory"], 3, "may not run"),
        (["follow", "999999"], 3, "No batch 999999"),
        (["cancel", "{batch}", "--user", "mallory"], 3, "No batch"),
    ],
)
def test_bad_usage_exits_2_and_refusals_exit_3(make_ledger, make_clerk, args, code, says):
    ledger = make_ledger(records=5)
    alice = make_clerk("alice")
    make_clerk("mallory", may_mark=False)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch
    args = [arg.format(ledger=ledger.pk, batch=batch.pk) for arg in args]

    with pytest.raises(CommandError) as refused:
        call_command("batches", *args)

    assert refused.value.returncode == code
    assert says in str(refused.value)
    assert Batch.objects.count() == 1, "nothing was started"


# --- only its own output, true figures, nothing a label can do to the terminal (issue 16) ---------

FAKE_END = "\x1b[2J\x1b[31mFAKE: all finished"  # clears the screen, then writes in red


def test_an_escape_sequence_in_a_label_reaches_the_terminal_neutralised(make_ledger, make_clerk):
    ledger = make_ledger(records=5, name=FAKE_END)
    make_clerk("alice")

    started = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice")
    listed = run("list")

    shown = "\\x1b[2J\\x1b[31mFAKE: all finished"  # the codes as text, acted on by no terminal
    assert started.returncode == 0, started.stderr
    assert shown in started.stdout and shown in listed.stdout
    assert "\x1b" not in started.stdout + started.stderr + listed.stdout + listed.stderr


def test_an_error_reaches_a_terminal_as_text_not_as_codes_or_rich_markup(make_ledger, make_clerk):
    ledger = make_ledger(records=5)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    state.end(batch.pk, BatchStatus.FAILED, error="[red]Boom[/red] \x1b]0;owned\x07 \x1b[2J")

    code, drawn = read_terminal("follow", str(batch.pk))

    assert code == 1
    assert "[red]Boom[/red]" in drawn, "rich markup in an error is shown, not applied"
    assert "\\x1b]0;owned\\x07" in drawn and "\\x1b[2J" in drawn
    assert "\x1b]0;" not in drawn and "\x1b[2J" not in drawn


def test_list_shows_a_cancelled_runs_real_figures(make_ledger, make_clerk):
    ledger = make_ledger(records=5)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    Batch.objects.filter(pk=batch.pk).update(total=2000, done_count=283, failed_count=10, skipped_count=1707)
    state.end(batch.pk, BatchStatus.CANCELLED)

    listed = run("list")

    assert listed.returncode == 0, listed.stderr
    line = listed.stdout.splitlines()[0]
    assert line.startswith(
        f"Batch {batch.pk} cancelled: 293 of 2,000 records worked, 283 done, 10 failed, 1,707 skipped"
    ), line
    assert "2000/2000" not in line and "2,000 of 2,000" not in line


def test_it_prints_only_its_own_output_and_log_lines_only_when_asked(make_ledger, make_clerk):
    ledger = make_ledger(records=5)
    make_clerk("alice")

    quiet = run("start", "mark_records", f"ledger_id={ledger.pk}", "--user", "alice")
    batch = Batch.objects.get()
    verbose = run("cancel", str(batch.pk), "--user", "alice", "-v", "2")

    assert quiet.returncode == 0 and verbose.returncode == 0
    assert quiet.stdout == f"Batch {batch.pk} started: mark_records on {ledger.name}.\n"
    assert quiet.stderr == "", "no log line (AXES: BEGIN …, event=batch.created …) by default"
    assert verbose.stdout == f"Batch {batch.pk} cancelled; its worker stops at its next checkpoint.\n"
    assert f"event=batch.cancelled batch_id={batch.pk}" in verbose.stderr, "with -v 2, on stderr"
