"""The Dockerfile, checked without a Docker engine (none runs on these machines).

The fast tests read the Dockerfile and .dockerignore and check the image's shape:
multi-stage on an official Python slim base, not root, the database on a volume, a
health check on /healthz, `credyt-bridge serve` as the entry point in exec form.

The slow test builds the image the only way possible here: every stage gets a fresh
virtual environment (the Python of the `FROM` image, no system site packages) and its
own root folder in tmp_path; COPY and RUN steps execute in order with the stage's ENV
and WORKDIR, container paths mapped into that root, the build context filtered by
.dockerignore. Commands that need root (groupadd, useradd, chown) are recorded, not run.
The result must then work as the container would: `--help`, `check` on the built-in
config, and `serve` (ENTRYPOINT + CMD) answering the HEALTHCHECK, crediting a signed
webhook through the sandbox, and stopping with exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import API_KEY, PADDLE_SECRET, STRIPE_SECRET, Sandbox, wait_until
from tests.helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Container paths under these stay as they are: they belong to the base image.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib64", "etc", "dev", "proc", "sys")
NEEDS_ROOT = ("groupadd", "useradd", "addgroup", "adduser", "chown")


# -- reading a Dockerfile ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"Dockerfile:{instruction.line}: write ENV as KEY=value"
                values[key] = value
        return values


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def parse_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"Dockerfile:{instruction.line}: an instruction before FROM"
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"Dockerfile:{instruction.line}: {instruction.keyword} must be in exec (JSON) form"
    )
    return value


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """`--from=builder src dst` -> ({"from": "builder"}, "src dst")."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        key, _, value = word[2:].partition("=")
        flags[key] = value
        rest = rest.strip()
    return flags, rest


def healthcheck_command(stage: Stage) -> tuple[dict[str, str], list[str]]:
    flags, rest = split_flags(stage.last("HEALTHCHECK").args)
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", "HEALTHCHECK CMD ..."
    return flags, exec_form(Instruction("HEALTHCHECK", command.strip(), 0))


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


# -- .dockerignore ----------------------------------------------------------------------


def ignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    """(negated, regex, pattern) per line, in order; the last matching rule wins."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((negated, re.compile(regex), pattern))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's rule: a pattern excludes a path when it matches it or a folder above it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex, _ in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def build_context(destination: Path) -> Path:
    """The files `docker build .` would send: the project minus .dockerignore."""
    rules = ignore_rules()
    negations = [pattern for negated, _, pattern in rules if negated]
    for folder, dirs, files in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = [
            d
            for d in dirs
            if not ignored(prefix + d, rules)
            or any(n.startswith(prefix + d + "/") for n in negations)
        ]
        for name in files:
            if not ignored(prefix + name, rules):
                target = destination / (prefix + name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, target)
    return destination


def test_dockerignore_sends_the_package_and_nothing_else() -> None:
    rules = ignore_rules()
    for needed in ("pyproject.toml", "README.md", "bridge/cli.py", "connectors/stripe.py"):
        assert not ignored(needed, rules), needed
    for left_out in (
        ".git/config",
        "tests/integration/test_flow.py",
        "bridge.db",
        "bridge.db-wal",
        "bridge/__pycache__/cli.cpython-311.pyc",
        ".venv/bin/python",
        "bench/run.py",
        "config.example.yaml",  # a symlink into bridge/; the real file travels with it
    ):
        assert ignored(left_out, rules), left_out


# -- the image's shape ------------------------------------------------------------------


def test_multi_stage_on_an_official_python_slim_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", stage.base), (
            stage.base
        )
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named (FROM ... AS builder)"
    assert any("pip wheel" in run.args for run in builder.all("RUN")), "the builder makes wheels"
    from_builder = [
        i
        for i in runtime.all("COPY") + runtime.all("RUN")
        if split_flags(i.args)[0].get("from") == builder.name
        or f"from={builder.name}" in split_flags(i.args)[0].get("mount", "")
    ]
    assert from_builder, "the runtime stage installs what the builder built"
    for copy in runtime.all("COPY"):
        flags, rest = split_flags(copy.args)
        sources = shlex.split(rest)[:-1]
        if "from" not in flags:
            assert not {".", "bridge", "connectors"} & set(sources), "no source tree at run time"


def test_runs_as_a_user_that_is_not_root(runtime: Stage) -> None:
    user = runtime.last("USER").args.split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(run.args for run in runtime.all("RUN"))
    assert re.search(rf"\b(useradd|adduser)\b[^&;]*\b{re.escape(user)}\b", created), (
        f"the runtime stage creates the user {user}"
    )
    assert f"chown {user}" in created, "the user owns the data folder"


def test_the_database_lives_on_a_volume(runtime: Stage) -> None:
    volumes = [
        v
        for i in runtime.all("VOLUME")
        for v in (json.loads(i.args) if i.args.startswith("[") else i.args.split())
    ]
    env = runtime.env()
    database = env["BRIDGE_DATABASE"]
    assert any(database.startswith(v.rstrip("/") + "/") for v in volumes), (database, volumes)
    assert env["BRIDGE_CONFIG"].startswith("/config/")


def test_serve_is_the_entry_point_in_exec_form(runtime: Stage) -> None:
    assert exec_form(runtime.last("ENTRYPOINT")) == ["credyt-bridge"]
    cmd = exec_form(runtime.last("CMD"))
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert "8080" in runtime.last("EXPOSE").args.split()
    stop = runtime.all("STOPSIGNAL")
    assert not stop or stop[-1].args in ("SIGTERM", "TERM", "15")


def test_healthcheck_asks_healthz_on_the_served_port(runtime: Stage) -> None:
    flags, command = healthcheck_command(runtime)
    assert command[0] == "python", "slim images have no curl: Python's urllib does it"
    port = exec_form(runtime.last("CMD"))[-1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(command)
    assert "timeout" in flags and "interval" in flags


# -- building it without Docker ---------------------------------------------------------


def mapped(text: str, root: Path) -> str:
    """Absolute container paths in `text` -> the same paths under the stage's root."""

    def replace(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.split("/")[1] in SYSTEM_DIRS:
            return path
        return str(root) + path

    return re.sub(r"(?<![\w.:/-])/[\w.-][\w./-]*", replace, text)


FAKE_COMMAND = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""


class StageBuild:
    """One stage, executed on this machine in a fresh virtual environment."""

    def __init__(
        self, stage: Stage, work: Path, context: Path, built: dict[str, StageBuild]
    ) -> None:
        label = stage.name or f"stage{len(built)}"
        self.stage = stage
        self.root = work / label / "root"
        self.root.mkdir(parents=True)
        self.context = context
        self.built = built
        self.workdir = "/"
        self.root_log = work / label / "needs-root.log"
        self.python = self._python(work / label / "python")
        fakes = work / label / "fakes"
        fakes.mkdir()
        for name in NEEDS_ROOT:
            fake = fakes / name
            fake.write_text(FAKE_COMMAND.format(log=self.root_log))
            fake.chmod(0o755)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
        }
        self.env["PATH"] = f"{fakes}:{self.python.parent}:/usr/bin:/bin"
        self.env["HOME"] = str(work / label / "home")

    def _python(self, folder: Path) -> Path:
        version = re.match(r"python:(\d+\.\d+)", self.stage.base)
        assert version, self.stage.base
        if version.group(1) != f"{sys.version_info[0]}.{sys.version_info[1]}":
            pytest.skip(f"the image uses Python {version.group(1)}, this is {sys.version}")
        venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(folder)
        return folder / "bin" / "python"

    def host(self, path: str) -> Path:
        full = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
        return self.root / full.lstrip("/")

    def run_all(self) -> None:
        for instruction in self.stage.instructions:
            handler = getattr(self, f"do_{instruction.keyword.lower()}", None)
            if handler is not None:
                handler(instruction)

    def do_env(self, instruction: Instruction) -> None:
        for key, value in Stage("", None, [instruction]).env().items():
            self.env[key] = mapped(value, self.root)

    def do_workdir(self, instruction: Instruction) -> None:
        self.workdir = instruction.args if instruction.args.startswith("/") else self.workdir
        self.host(self.workdir).mkdir(parents=True, exist_ok=True)

    def do_copy(self, instruction: Instruction) -> None:
        flags, rest = split_flags(instruction.args)
        *sources, destination = shlex.split(rest)
        origin = self.built[flags["from"]].root if "from" in flags else self.context
        target = self.host(destination)
        into = destination.endswith("/") or len(sources) > 1
        for source in sources:
            found = origin / source.lstrip("/")
            assert found.exists(), f"Dockerfile:{instruction.line}: COPY {source}: not found"
            if found.is_dir():
                shutil.copytree(found, target, dirs_exist_ok=True)
            else:
                where = target / found.name if into else target
                where.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, where)

    def do_run(self, instruction: Instruction) -> None:
        flags, command = split_flags(instruction.args)
        mounted: Path | None = None
        if "mount" in flags:
            mount = dict(part.split("=", 1) for part in flags["mount"].split(","))
            assert mount.get("type") == "bind", f"Dockerfile:{instruction.line}: {mount}"
            mounted = self.host(mount["target"])
            shutil.copytree(self.built[mount["from"]].root / mount["source"].lstrip("/"), mounted)
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", mapped(command, self.root)],
                cwd=self.host(self.workdir),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            if mounted is not None:
                shutil.rmtree(mounted)
        assert done.returncode == 0, (
            f"Dockerfile:{instruction.line}: RUN {command}\n{done.stdout}\n{done.stderr}"
        )

    def root_commands(self) -> str:
        return self.root_log.read_text() if self.root_log.exists() else ""


@pytest.mark.slow
def test_the_image_built_without_docker_serves(
    tmp_path: Path, stages: list[Stage], sandbox: Sandbox
) -> None:
    context = build_context(tmp_path / "context")
    built: dict[str, StageBuild] = {}
    for stage in stages:
        build = StageBuild(stage, tmp_path / "build", context, built)
        build.run_all()
        built[stage.name or f"stage{len(built)}"] = build
    image = list(built.values())[-1]
    user = image.stage.last("USER").args.split(":")[0]
    assert re.search(rf"useradd .*\b{user}\b", image.root_commands())
    assert not (image.root / "src").exists(), "no source tree in the runtime stage"
    assert not (image.root / "wheels").exists(), "no wheels left in the runtime stage"

    env = dict(image.env)
    env.update(
        CREDYT_API_URL=sandbox.url,
        CREDYT_API_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        PADDLE_WEBHOOK_SECRET=PADDLE_SECRET,
    )
    cwd = image.host(image.workdir)
    entrypoint = exec_form(image.stage.last("ENTRYPOINT"))

    def container(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*entrypoint, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )

    where = subprocess.run(
        ["python", "-c", "import bridge, connectors; print(bridge.__file__, connectors.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    venv_root = str(image.python.parent.parent)
    assert all(path.startswith(venv_root) for path in where.stdout.split()), where.stdout

    shown = container("--help")
    assert shown.returncode == 0 and "serve" in shown.stdout, shown.stderr
    checked = container("check")  # BRIDGE_CONFIG from the image: the built-in config
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout

    port = free_port()
    cmd = exec_form(image.stage.last("CMD"))
    cmd = ["127.0.0.1" if arg == "0.0.0.0" else str(port) if arg == "8080" else arg for arg in cmd]
    _, probe = healthcheck_command(image.stage)
    probe = [arg.replace(":8080/", f":{port}/") for arg in probe]
    server = subprocess.Popen(
        [*entrypoint, *cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def healthy() -> bool:
            assert server.poll() is None, server.communicate()[0]
            return subprocess.run(probe, env=env, cwd=cwd, capture_output=True).returncode == 0

        wait_until(healthy, 30, "the HEALTHCHECK to pass")
        customer = sandbox.state.add_customer(external_id="cus_docker")
        sent = container(
            "send",
            "stripe",
            "invoice.paid",
            "--url",
            f"http://127.0.0.1:{port}/webhooks/stripe",
            "--customer",
            customer,
            "--amount",
            "12.34",
            "--currency",
            "usd",
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(
            lambda: sandbox.state.balance(customer, "USD") == Decimal("12.34"),
            20,
            "the credit",
        )
        database = Path(env["BRIDGE_DATABASE"])
        assert database.is_file() and database.is_relative_to(image.root / "data")
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert server.wait(timeout=30) == 0, server.communicate()[0]
        stopped = subprocess.run(probe, env=env, cwd=cwd, capture_output=True)
        assert stopped.returncode != 0, "the HEALTHCHECK fails when nothing answers"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
