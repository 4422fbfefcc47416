"""Gadgetron chain XML (``config_xml/*.xml``): parse it and run it in-process.

A chain is Gadgetron 4's ``<configuration><version>2</version>...<stream>``
with ``<gadget>`` nodes (standard Gadgetron gadgets, identified by
``<classname>``) and ``<external>`` nodes: ``<execute name="module"
target="function" type="python"/>`` or ``<connect address=".." port=".."/>``,
each followed by ``<configuration>`` with ``<property name value>`` entries.

Running (:func:`run_chain`): standard gadgets become their Python twins
(:mod:`gadgets.standard`); an ``<execute>`` node imports ``module.target`` and
calls it with an :class:`~gadgets.connection.InProcessConnection` carrying the
node's ``<configuration>`` element and the header, exactly what
``python -m gadgetron`` would pass; a ``<connect>`` node dials the running
server with :class:`~gadgets.peer.GadgetronPeer`. A gadget name without a twin,
a non-Python external, a module or target that does not exist, or a property
our gadgets do not know is a :class:`ChainConfigError` before any data move.
"""

import importlib
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import ismrmrd

from gadgets.connection import InProcessConnection
from gadgets.errors import ChainConfigError, GadgetError
from gadgets.settings import PROPERTIES, parse_gadget_properties, properties
from gadgets.standard import TWINS

log = logging.getLogger(__name__)


@dataclass
class GadgetNode:
    classname: str
    name: str
    dll: str
    properties: Dict[str, str]


@dataclass
class ExternalNode:
    module: Optional[str]  # <execute name>
    target: Optional[str]  # <execute target>
    kind: Optional[str]  # <execute type>
    address: Optional[str]  # <connect address>
    port: Optional[int]  # <connect port>
    configuration: ET.Element
    properties: Dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.module}.{self.target}" if self.module else f"connect {self.address}:{self.port}"

    @property
    def config_bytes(self) -> bytes:
        return ET.tostring(self.configuration, encoding="utf-8")


@dataclass
class Chain:
    nodes: List[Union[GadgetNode, ExternalNode]]
    source: str = "<string>"
    readers: List[str] = field(default_factory=list)
    writers: List[str] = field(default_factory=list)


def _parse_external(node, source) -> ExternalNode:
    configuration = node.find("configuration")
    if configuration is None:
        raise ChainConfigError(f"{source}: an <external> node without <configuration> (Gadgetron then sends the "
                               f"node an empty config); add <configuration/>")
    execute, connect = node.find("execute"), node.find("connect")
    if (execute is None) == (connect is None):
        raise ChainConfigError(f"{source}: an <external> node needs exactly one of <execute> or <connect>")
    if execute is not None:
        module, target, kind = execute.get("name"), execute.get("target"), (execute.get("type") or "").lower()
        if not module or not target:
            raise ChainConfigError(f"{source}: <execute> needs name= (module) and target= (function)")
        if kind != "python":
            raise ChainConfigError(f"{source}: <execute type={kind!r}>: only python externals can be replayed")
        return ExternalNode(module, target, kind, None, None, configuration, properties(configuration))
    port = connect.get("port")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ChainConfigError(f"{source}: <connect port={port!r}> is not a port number") from None
    return ExternalNode(None, None, None, connect.get("address") or "localhost", port, configuration,
                        properties(configuration))


def parse_chain(source: Union[str, Path]) -> Chain:
    """Parse a chain file (path) or chain XML text; raises :class:`ChainConfigError`."""
    text, name = source, "<string>"
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("<")):
        path = Path(source)
        if not path.is_file():
            raise ChainConfigError(f"chain file {path} does not exist")
        text, name = path.read_text(encoding="utf-8"), str(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ChainConfigError(f"{name}: not valid XML: {exc}") from None
    if root.tag != "configuration" or (root.findtext("version") or "").strip() != "2":
        raise ChainConfigError(f"{name}: expected Gadgetron 4's <configuration><version>2</version> format")
    stream = root.find("stream")
    if stream is None:
        raise ChainConfigError(f"{name}: no <stream>")
    nodes = []
    for node in stream:
        if node.tag == "gadget":
            nodes.append(GadgetNode((node.findtext("classname") or "").strip(), (node.findtext("name") or "").strip(),
                                    (node.findtext("dll") or "").strip(), properties(node)))
        elif node.tag == "external":
            nodes.append(_parse_external(node, name))
        else:
            raise ChainConfigError(f"{name}: <{node.tag}> nodes are not supported in replay")
    readers = [(r.findtext("classname") or "").strip() for r in root.iterfind("readers/reader")]
    writers = [(w.findtext("classname") or "").strip() for w in root.iterfind("writers/writer")]
    return Chain(nodes, name, readers, writers)


def resolve_target(node: ExternalNode) -> Callable:
    try:
        module = importlib.import_module(node.module)
    except ImportError as exc:
        raise ChainConfigError(f"external {node.label}: cannot import module {node.module!r}: {exc}") from None
    target = getattr(module, node.target, None)
    if not callable(target):
        raise ChainConfigError(f"external {node.label}: module {node.module!r} has no function {node.target!r}")
    return target


def validate(chain: Chain) -> None:
    """Everything that can be checked without data: gadget names, targets, property names and values."""
    for node in chain.nodes:
        if isinstance(node, GadgetNode):
            twin = TWINS.get(node.classname)
            if twin is None:
                raise ChainConfigError(f"{chain.source}: gadget {node.classname!r} has no Python twin for replay; "
                                       f"known: {sorted(TWINS)}")
            unknown = sorted(set(node.properties) - set(twin.PROPERTIES))
            if unknown:
                raise ChainConfigError(f"{chain.source}: {node.classname} has no properties {unknown}")
        elif node.module is not None:
            resolve_target(node)
            if node.module in PROPERTIES:
                try:
                    parse_gadget_properties(node.module, node.configuration)
                except ChainConfigError as exc:
                    raise ChainConfigError(f"{chain.source}: {exc}") from None


@dataclass
class ChainResult:
    errors: List[str] = field(default_factory=list)  # ERROR messages and exceptions of the nodes


def _run_external(node: ExternalNode, items, header, header_bytes, sink, result: ChainResult):
    if node.module is None:
        from gadgets.peer import GadgetronPeer

        try:
            peer = GadgetronPeer.connect(node.address, node.port)
        except OSError as exc:
            raise GadgetError(f"{node.label}: cannot connect to the server ({exc}); is `dps-gadgetron serve` "
                              f"running?") from None
        outcome = peer.run(node.config_bytes, header_bytes, items, on_item=sink)
        result.errors.extend(f"{node.label}: {e}" for e in outcome.errors)
        if outcome.failure is not None:
            result.errors.append(f"{node.label}: {outcome.failure}")
        return
    target = resolve_target(node)
    connection = InProcessConnection(items, header, node.configuration, sink, header_bytes=header_bytes,
                                     config_bytes=node.config_bytes)
    try:
        target(connection)
    except Exception as exc:  # a node that dies: what it sent still flows on, as under Gadgetron
        log.error("external %s failed: %s: %s", node.label, type(exc).__name__, exc)
        if not connection.errors:
            result.errors.append(f"{node.label}: {type(exc).__name__}: {exc}")
    finally:
        # Anything the node did not read is lost; drain so upstream twins finish their bookkeeping.
        for _ in connection._items:
            pass
    result.errors.extend(connection.errors)


def run_chain(chain: Chain, header_bytes: bytes, items, sink: Callable, result: Optional[ChainResult] = None
              ) -> ChainResult:
    """Run ``items`` (acquisitions, ...) through the chain; the last node's output goes to ``sink``.

    Standard twins stream; each external node consumes its whole input before the
    next node starts. Raises :class:`ChainConfigError` / header errors that stop
    the whole scan; per-slice problems end up in ``result.errors``.
    """
    validate(chain)
    result = result or ChainResult()
    header = ismrmrd.xsd.CreateFromDocument(header_bytes)
    stream = iter(items)
    for i, node in enumerate(chain.nodes):
        last = i == len(chain.nodes) - 1
        if isinstance(node, GadgetNode):
            stream = TWINS[node.classname](header, node.properties).process(stream)
            continue
        collected: list = []
        _run_external(node, stream, header, header_bytes, sink if last else collected.append, result)
        stream = iter(collected)
    if chain.nodes and isinstance(chain.nodes[-1], GadgetNode):
        for item in stream:
            sink(item)
    return result
