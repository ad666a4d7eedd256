"""The `bitttt` command: help, version, and clean failures on bad input."""
import subprocess


def run(cli, *args):
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_subcommands(bitttt_cli):
    r = run(bitttt_cli, "--help")
    assert r.returncode == 0
    assert "bench" in r.stdout and "demo" in r.stdout


def test_no_subcommand_is_an_error(bitttt_cli):
    r = run(bitttt_cli)
    assert r.returncode != 0


def test_unknown_benchmark_is_one_line_error(bitttt_cli):
    r = run(bitttt_cli, "bench", "no-such-bench")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "unknown benchmark 'no-such-bench'" in r.stderr


def test_bad_isa_is_rejected(bitttt_cli):
    r = run(bitttt_cli, "bench", "membw", "--quick", "--isa", "sse9")
    assert r.returncode == 1
    assert "unknown ISA 'sse9'" in r.stderr


def test_bench_json_has_required_fields(bitttt_cli):
    import json

    r = run(bitttt_cli, "bench", "membw", "--quick", "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert rows
    for row in rows:
        assert set(row) >= {"name", "value", "unit", "reference", "ratio", "threads", "isa", "cpu"}
        assert row["threads"] == 1
        assert row["value"] > 0
