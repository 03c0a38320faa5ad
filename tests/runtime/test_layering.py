"""The layers of docs/architecture.md, checked on the source: every import of every module of
``gateway/`` and ``drivers/`` (at the top, inside functions, relative, and
``importlib.import_module("...")`` with a literal name) is read from the AST, and

* no reference peer (``gateway.peers``) imports a service package (the radio, the border router,
  the group owner, gwctl) and no service package imports a peer or the demo;
* nothing but the demo imports the demo;
* the sans-IO layers (``gateway.wire``, ``gateway.crypto``, ``gateway.thread``) import nothing
  that does I/O (asyncio, sockets, selectors, subprocesses, TLS, threads, aiocoap's contexts,
  transports and resources, zeroconf, pyroute2, serial lines, SPI, GPIO, the runtime shells);
* ``drivers`` imports nothing of ``gateway``.

The synthetic trees below show that each rule fails when it is broken.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVICES = ("gateway.radio", "gateway.border_router", "gateway.group_owner", "gateway.admin")
PEERS = ("gateway.peers",)
DEMO = ("gateway.demo",)
SANS_IO = ("gateway.wire", "gateway.crypto", "gateway.thread")
DOES_IO = (
    "asyncio",
    "socket",
    "socketserver",
    "selectors",
    "select",
    "subprocess",
    "ssl",
    "threading",
    "multiprocessing",
    "aiocoap.protocol",
    "aiocoap.transports",
    "aiocoap.resource",
    "aiocoap.messagemanager",
    "aiocoap.tokenmanager",
    "zeroconf",
    "pyroute2",
    "ifaddr",
    "serial",
    "spidev",
    "gpiod",
    "aiohttp",
    "systemd",
    "drivers.radio",
    "drivers.spi",
    "drivers.gpio",
    "drivers.emulator",
    "drivers.at86rf233",
    "gateway.runtime",
    "gateway.cli",
)
# Names that are I/O even when taken from a package that is otherwise a codec.
DOES_IO_NAMES = {"aiocoap": {"Context"}}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (a module, or module.name for ``from m import name``)
    line: int


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> list[Import]:
    mod = module_name(root, path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(mod, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.append(Import(mod, source, node.lineno))
            found += [
                Import(mod, f"{source}.{a.name}" if source else a.name, node.lineno)
                for a in node.names
            ]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            # aiocoap.Context after ``import aiocoap``
            if node.attr in DOES_IO_NAMES.get(node.value.id, set()):
                found.append(Import(mod, f"{node.value.id}.{node.attr}", node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(mod, node.args[0].value, node.lineno))
    return found


def rule_broken(imp: Import) -> str | None:
    """Why ``imp`` breaks a layer, or None."""
    src, dst = imp.module, imp.target
    if _within(src, PEERS) and _within(dst, SERVICES):
        return "a reference peer imports a service package"
    if _within(src, SERVICES) and _within(dst, PEERS):
        return "a service package imports a reference peer"
    if not _within(src, DEMO) and _within(dst, DEMO):
        return "only the demo may import the demo"
    if _within(src, SANS_IO):
        if _within(dst, DOES_IO) or _within(dst, SERVICES + PEERS + DEMO):
            return "a sans-IO layer imports something that does I/O"
        head, _, name = dst.rpartition(".")
        if name in DOES_IO_NAMES.get(head, set()):
            return "a sans-IO layer imports something that does I/O"
    if _within(src, ("drivers",)) and _within(dst, ("gateway",)):
        return "drivers import gateway"
    return None


def violations(root: Path) -> list[str]:
    out = []
    for top in ("gateway", "drivers"):
        for path in sorted((root / top).rglob("*.py")):
            for imp in imports_of(root, path):
                why = rule_broken(imp)
                if why is not None:
                    rel = path.relative_to(root)
                    out.append(f"{rel}:{imp.line}: {why} ({imp.module} -> {imp.target})")
    return out


def test_the_tree_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def test_every_module_is_read() -> None:
    mods = {
        module_name(ROOT, p) for top in ("gateway", "drivers") for p in (ROOT / top).rglob("*.py")
    }
    for expected in ("gateway.wire.cloudapi", "gateway.peers.cloud.server", "drivers.radio"):
        assert expected in mods


# ------------------------------------------------------------------------- each rule can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"gateway/__init__.py": "", "drivers/__init__.py": "", **files}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        for parent in p.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("rel", "text", "why"),
    [
        ("gateway/peers/app/cli.py", "from gateway.group_owner import cloudapi\n", "peer imports"),
        ("gateway/peers/thing.py", "def f():\n    import gateway.radio.client\n", "peer imports"),
        ("gateway/peers/x.py", "from ..admin.common import run\n", "peer imports"),
        ("gateway/group_owner/x.py", "from gateway.peers.cloud import server\n", "service"),
        ("gateway/border_router/demo.py", "from ..peers import commissioner\n", "service"),
        (
            "gateway/radio/x.py",
            "import importlib\nimportlib.import_module('gateway.demo')\n",
            "demo",
        ),
        ("gateway/wire/x.py", "import asyncio\n", "sans-IO"),
        ("gateway/wire/y.py", "import aiocoap\nctx = aiocoap.Context\n", "sans-IO"),
        ("gateway/wire/z.py", "from aiocoap import Context\n", "sans-IO"),
        ("gateway/crypto/x.py", "def f():\n    from socket import socket\n", "sans-IO"),
        ("gateway/crypto/y.py", "from aiocoap.transports import tcp\n", "sans-IO"),
        ("gateway/thread/x.py", "from gateway.runtime.jsonline import JsonLineClient\n", "sans-IO"),
        ("drivers/x.py", "from gateway.errors import ParseError\n", "drivers import"),
        ("drivers/emulator/y.py", "from ... import gateway\n", "drivers import"),
    ],
)
def test_a_broken_layer_is_found(tmp_path: Path, rel: str, text: str, why: str) -> None:
    root = _tree(tmp_path, {rel: text})
    found = violations(root)
    assert len(found) >= 1 and all(why in v for v in found), found
    assert found[0].startswith(rel + ":")


def test_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "gateway/wire/coap.py": "import aiocoap\nfrom aiocoap.numbers.codes import Code\n"
            "m = aiocoap.Message\n",
            "gateway/peers/cloud.py": "from gateway.wire import cloudapi\n"
            "from gateway.runtime.coap_tls import CoapJsonClient\n",
            "gateway/border_router/service.py": "import asyncio\nfrom gateway.radio import client\n",
            "gateway/demo/run.py": "from gateway.peers import thing\nfrom gateway.demo import cbsb\n",
            "drivers/radio.py": "import asyncio\nfrom drivers.errors import GatewayError\n",
        },
    )
    assert violations(root) == []
