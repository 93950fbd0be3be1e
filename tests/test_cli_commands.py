"""CLI subcommands registered by installed packages (``icdreward_register_commands``).

Each test publishes throwaway plugin modules under the ``icdreward`` entry-point group
(``metadata.entry_points`` patched to list them beside the installed ones) and runs
``icdreward`` in-process, so the real discovery, guards and warnings are exercised.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pytest

from icdreward import RewardEngine
from icdreward.cli import main
from icdreward.cli.command import EXIT_OK, Command, error
from icdreward.plugin import PluginManager, hookimpl

Publish = Callable[..., None]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _hello(name: str = "hello", calls: list[str] | None = None) -> Command:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("who")
        parser.add_argument("--shout", action="store_true")

    def run_it(args: argparse.Namespace) -> int:
        text = f"{name} {args.who}"
        print(text.upper() if args.shout else text)
        if calls is not None:
            calls.append(args.who)
        if args.who == "nobody":
            error("nobody to greet")
            return 3
        return EXIT_OK

    return Command(name, f"say {name}", configure, run_it, order=90)


@pytest.fixture
def publish(monkeypatch: pytest.MonkeyPatch) -> Publish:
    """``publish(name, **hooks)``: an entry point ``name`` whose module holds ``hooks``."""
    original = metadata.entry_points
    extra: list[metadata.EntryPoint] = []

    def entry_points(**params: Any) -> Any:
        found = original(**params)
        return [*found, *extra] if params.get("group") == "icdreward" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)

    def add(name: str, **hooks: Callable[..., None]) -> None:
        module = types.ModuleType(f"icdreward_test_{name}")
        for hook, function in hooks.items():
            setattr(module, hook, hookimpl(function))
        monkeypatch.setitem(sys.modules, module.__name__, module)
        extra.append(metadata.EntryPoint(name=name, value=module.__name__, group="icdreward"))

    return add


def test_a_plugin_command_is_listed_parsed_and_run(
    capsys: pytest.CaptureFixture[str], publish: Publish
) -> None:
    calls: list[str] = []
    publish(
        "greeter",
        icdreward_register_commands=lambda register: register(_hello(calls=calls)),
    )
    code, out, err = run(capsys, "--help")
    assert code == 0 and err == ""
    assert "hello" in out and "say hello" in out
    code, out, err = run(capsys, "hello", "world", "--shout")
    assert (code, out, err) == (0, "HELLO WORLD\n", "")
    assert calls == ["world"]
    code, out, err = run(capsys, "hello", "nobody")
    assert code == 3
    assert err == "icdreward: error: nobody to greet\n"
    code, _, err = run(capsys, "hello")  # its own arguments are checked by argparse
    assert code == 2 and "the following arguments are required: who" in err


def test_a_plugin_that_only_registers_commands_is_listed_with_them(
    capsys: pytest.CaptureFixture[str], publish: Publish
) -> None:
    publish("greeter", icdreward_register_commands=lambda register: register(_hello()))
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    entry = next(p for p in report["plugins"] if p["name"] == "greeter")
    assert entry["commands"] == ["hello"]
    assert entry["rewards"] == [] and entry["parsers"] == []
    assert report["failed"] == []
    code, out, _ = run(capsys, "plugins")
    line = next(line for line in out.splitlines() if "greeter" in line)
    assert line.split()[-4:] == ["-", "-", "hello", "-"]  # rewards, parsers, commands, strategies


def test_the_engine_loads_such_a_plugin_without_running_its_command_hook(
    publish: Publish,
) -> None:
    asked: list[int] = []
    publish(
        "greeter",
        icdreward_register_commands=lambda register: asked.append(1),
    )
    with RewardEngine.from_preset("default") as engine:
        assert "greeter" in {p.name for p in engine.plugin_manager.plugins}
        assert engine.score(["</think><diagnosis>E11.9</diagnosis>"], ["E119"]).total.shape == (1,)
    assert asked == [1]  # once, when .plugins listed the commands; never to build or score


def _boom(register: Any) -> None:
    raise RuntimeError("no commands today")


def test_a_command_hook_that_raises_is_one_warning_and_every_other_command_works(
    capsys: pytest.CaptureFixture[str], publish: Publish
) -> None:
    publish("crashy", icdreward_register_commands=_boom)
    publish("greeter", icdreward_register_commands=lambda register: register(_hello()))
    code, out, err = run(capsys, "code", "E11.9")
    assert code == 0
    assert out.startswith("E11.9")
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("icdreward: warning: icdreward plugin 'crashy'")
    assert "icdreward_register_commands raised RuntimeError('no commands today')" in lines[0]
    code, out, err = run(capsys, "hello", "you")
    assert code == 0 and out == "hello you\n"
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 1
    assert err == ""  # listed, not warned about as well
    failed = json.loads(out)["failed"]
    assert [f["name"] for f in failed] == ["crashy"]


def test_registering_something_else_than_a_command_fails_that_plugin(
    capsys: pytest.CaptureFixture[str], publish: Publish
) -> None:
    publish("sloppy", icdreward_register_commands=lambda register: register("hello"))
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 1 and err == ""
    (failed,) = json.loads(out)["failed"]
    assert failed["name"] == "sloppy"
    assert "a command must be an icdreward.cli.command.Command, got 'hello'" in failed["reason"]


def test_a_plugin_cannot_replace_a_core_command_or_another_plugins(
    capsys: pytest.CaptureFixture[str], publish: Publish
) -> None:
    publish("first", icdreward_register_commands=lambda register: register(_hello()))
    publish("second", icdreward_register_commands=lambda register: register(_hello()))
    publish("usurper", icdreward_register_commands=lambda register: register(_hello("code")))
    code, out, err = run(capsys, "code", "E11.9")
    assert code == 0 and out.startswith("E11.9")  # still the core's command
    lines = sorted(err.splitlines())
    assert len(lines) == 2
    assert "plugin 'second': its command 'hello' was skipped: plugin 'first'" in lines[0]
    assert "plugin 'usurper': its command 'code' was skipped: icdreward itself" in lines[1]


def test_strict_managers_raise_on_a_duplicate_command(publish: Publish) -> None:
    from icdreward.errors import PluginLoadError

    publish("first", icdreward_register_commands=lambda register: register(_hello()))
    publish("second", icdreward_register_commands=lambda register: register(_hello()))
    with pytest.raises(PluginLoadError, match="'second': its command 'hello'"):
        _ = PluginManager(strict=True).commands


def test_prepare_comes_from_the_verl_integration_through_the_hook(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager = PluginManager()
    entry = manager.commands["prepare"]
    assert entry.plugin == "verl"
    assert entry.command.run.__module__ == "icdreward_verl._cli"
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    verl = next(p for p in json.loads(out)["plugins"] if p["name"] == "verl")
    assert verl["commands"] == ["prepare"] and verl["rewards"] == []
    assert verl["module"] == "icdreward_verl._cli"
