"""A small Dockerfile reader for the static tests: stages, their instructions, ARG defaults."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str] | None:
        """The JSON-array form of CMD/ENTRYPOINT/HEALTHCHECK CMD, if written so."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :].strip()
        if text.startswith("["):
            parsed: list[str] = json.loads(text)
            return parsed
        return None


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        return self.all(keyword)[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.global_args.get(m.group(1), m.group(0)), text)


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments.strip(), re.IGNORECASE)
            assert match, f"every stage is named: {line}"
            stage = Stage(base=match.group(1), name=match.group(2))
            stages[stage.name] = stage
        elif stage is None:
            assert keyword == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = arguments.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            stage.instructions.append(Instruction(keyword, arguments.strip()))
    return Dockerfile(global_args, stages)


# /src as a word of a RUN command: where the image's build copies the project.
IMAGE_SOURCE = re.compile(r"(?<![\w./-])/src(?=/|\s|$)")


def run_lambda_install_steps(checkout: Path, copy: Path, env: dict[str, str]) -> None:
    """The lambda stage's COPYs into /src and its RUN commands that run container/install.sh, in
    the Dockerfile's order, each through the shell as the build runs it, with `copy` for /src
    (the last one removes it, as the build does). A failed step raises with its stderr. The
    project's own step (install.sh app) runs with pip's bytecode compilation as the build has
    it, whatever PIP_COMPILE says for the others: a cold start imports the project from it."""
    for instruction in parse(checkout / "Dockerfile").stages["lambda"].instructions:
        if instruction.keyword == "COPY":
            *parts, destination = instruction.arguments.split()
            if IMAGE_SOURCE.match(destination):
                target = copy / Path(destination).relative_to("/src")
                target.parent.mkdir(parents=True, exist_ok=True)
                for part in parts:
                    if (checkout / part).is_dir():
                        shutil.copytree(checkout / part, target, dirs_exist_ok=True)
                    else:
                        shutil.copy2(checkout / part, target)
        elif instruction.keyword == "RUN" and "container/install.sh" in instruction.arguments:
            command = IMAGE_SOURCE.sub(str(copy), instruction.arguments)
            step_env = env
            if "install.sh app" in command:
                step_env = {name: value for name, value in env.items() if name != "PIP_COMPILE"}
            done = subprocess.run(
                ["sh", "-c", command], env=step_env, capture_output=True, text=True, check=False
            )
            if done.returncode:
                raise RuntimeError(f"{command} failed: {done.stderr[-3000:]}")
