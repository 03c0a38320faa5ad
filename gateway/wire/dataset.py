"""Thread operational datasets (active, pending) and the commissioner dataset.

A dataset is a sequence of MeshCoP TLVs (fact sheet §3). The classes here give typed fields and
convert to and from TLVs, bytes and the hex string OpenThread's CLI prints for
``dataset active -x`` / takes in ``dataset set active <hex>``.

Round trips are byte-identical: :meth:`OperationalDataset.from_tlvs` remembers the order the
TLVs came in and keeps TLVs it has no field for (``extra_tlvs``); :meth:`to_tlvs` writes present
fields in that order, then any other field in OpenThread's own order (``Dataset::WriteTlvsFrom``:
active timestamp, pending timestamp, delay, channel, wake-up channel, channel mask, extended PAN
ID, mesh-local prefix, network key, network name, PAN ID, PSKc, security policy), then the
remaining extra TLVs.

Validation on decode follows OpenThread's ``Dataset::ValidateTlvs``: no extended-form TLV, no
duplicate type, at most 254 bytes, a channel on page 0 must be 11–26, and every known value well
formed. Anything else raises :class:`~gateway.errors.ParseError`.

The network key and the PSKc never appear in a repr (shown as ``[redacted]``, like OpenThread's
``dataset active -ns``).
"""

from __future__ import annotations

import binascii
import ipaddress
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, Self, cast

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.meshcop import (
    ActiveTimestampTlv,
    BorderAgentLocatorTlv,
    ChannelMask,
    ChannelTlv,
    CommissionerSessionIdTlv,
    DelayTimerTlv,
    ExtendedPanIdTlv,
    JoinerUdpPortTlv,
    MeshcopTlv,
    MeshcopTlvType,
    MeshLocalPrefixTlv,
    NetworkKeyTlv,
    NetworkNameTlv,
    PanIdTlv,
    PendingTimestampTlv,
    PskcTlv,
    SecurityPolicy,
    SteeringDataTlv,
    Timestamp,
    WakeupChannelTlv,
)
from gateway.wire.tlv import Tlv, TypedTlv, decode_tlvs, encode_tlvs

__all__ = [
    "MAX_DATASET_LENGTH",
    "ActiveDataset",
    "CommissionerDataset",
    "OperationalDataset",
    "PendingDataset",
    "RandomSource",
    "new_active_dataset",
]

MAX_DATASET_LENGTH = 254
"""OpenThread's ``OT_OPERATIONAL_DATASET_MAX_LENGTH``."""

T = MeshcopTlvType


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one TLV maps to dataset fields."""

    tlv_type: int
    fields: tuple[str, ...]
    encode: Callable[[Any], bytes | None]
    decode: Callable[[bytes], dict[str, Any]]


def _opt(name: str, enc: Callable[[Any], bytes]) -> Callable[[Any], bytes | None]:
    def f(ds: Any) -> bytes | None:
        v = getattr(ds, name)
        return None if v is None else enc(v)

    return f


def _channel_spec(tlv_type: int, name: str, cls: type[ChannelTlv | WakeupChannelTlv]) -> _Spec:
    page_name = f"{name}_page"

    def enc(ds: Any) -> bytes | None:
        ch = getattr(ds, name)
        if ch is None:
            return None
        page = getattr(ds, page_name)
        if page == 0 and not 11 <= ch <= 26:
            raise InvalidArgument(f"{name} {ch} is not a 2.4 GHz channel (11..26)")
        return cls(ch, page).value_bytes()

    def dec(v: bytes) -> dict[str, Any]:
        c = cls.from_value(v)
        if c.page == 0 and not 11 <= c.channel <= 26:
            raise ParseError(f"{cls.__name__}: channel {c.channel} is not on 2.4 GHz (11..26)")
        return {name: c.channel, page_name: c.page}

    return _Spec(tlv_type, (name, page_name), enc, dec)


def _simple(tlv_type: int, name: str, cls: type[Any], attr: str = "value") -> _Spec:
    def enc(v: Any) -> bytes:
        out: bytes = cls(v).value_bytes()
        return out

    def dec(v: bytes) -> dict[str, Any]:
        return {name: getattr(cls.from_value(v), attr)}

    return _Spec(tlv_type, (name,), _opt(name, enc), dec)


_TIMESTAMP = _simple(T.ACTIVE_TIMESTAMP, "active_timestamp", ActiveTimestampTlv)
_PENDING_TS = _simple(T.PENDING_TIMESTAMP, "pending_timestamp", PendingTimestampTlv)
_DELAY = _simple(T.DELAY_TIMER, "delay_timer", DelayTimerTlv)
_CHANNEL = _channel_spec(T.CHANNEL, "channel", ChannelTlv)
_WAKEUP = _channel_spec(T.WAKEUP_CHANNEL, "wakeup_channel", WakeupChannelTlv)
_MASK = _Spec(
    T.CHANNEL_MASK,
    ("channel_mask",),
    _opt("channel_mask", lambda m: m.to_bytes()),
    lambda v: {"channel_mask": ChannelMask.from_bytes(v)},
)
_XPANID = _simple(T.EXTENDED_PAN_ID, "ext_pan_id", ExtendedPanIdTlv)
_MLP = _simple(T.MESH_LOCAL_PREFIX, "mesh_local_prefix", MeshLocalPrefixTlv)
_KEY = _simple(T.NETWORK_KEY, "network_key", NetworkKeyTlv)
_NAME = _simple(T.NETWORK_NAME, "network_name", NetworkNameTlv)
_PANID = _simple(T.PAN_ID, "pan_id", PanIdTlv)
_PSKC = _simple(T.PSKC, "pskc", PskcTlv)
_POLICY = _Spec(
    T.SECURITY_POLICY,
    ("security_policy",),
    _opt("security_policy", lambda p: p.to_bytes()),
    lambda v: {"security_policy": SecurityPolicy.from_bytes(v)},
)

_SECRET_FIELDS = frozenset({"network_key", "pskc"})


class _Values:
    """Attribute view of decoded field values, to re-encode one TLV on its own."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # fields of other TLVs: a page defaults to 0
        return 0 if name.endswith("_page") else None


class _TlvRecord:
    """Shared TLV mapping, order keeping and validation of the dataset classes."""

    __slots__ = ()
    _SPECS: ClassVar[tuple[_Spec, ...]] = ()
    extra_tlvs: tuple[Tlv, ...]
    tlv_order: tuple[int, ...]

    def _check_extras(self) -> None:
        known = {s.tlv_type for s in self._SPECS}
        seen: set[int] = set()
        extras = tuple(self.extra_tlvs)
        for t in extras:
            if not isinstance(t, Tlv):
                raise InvalidArgument("extra_tlvs holds raw Tlv objects")
            if t.type in known:
                raise InvalidArgument(f"TLV type {t.type} has a field of its own; set the field")
            if t.type in seen:
                raise InvalidArgument(f"duplicate extra TLV type {t.type}")
            seen.add(t.type)
        object.__setattr__(self, "extra_tlvs", extras)
        object.__setattr__(self, "tlv_order", tuple(self.tlv_order))

    def to_tlvs(self) -> tuple[Tlv, ...]:
        """The dataset as raw TLVs, in the order described in the module docstring."""
        by_type: dict[int, Tlv] = {}
        for spec in self._SPECS:
            value = spec.encode(self)
            if value is not None:
                by_type[spec.tlv_type] = Tlv(spec.tlv_type, value)
        extras = {t.type: t for t in self.extra_tlvs}
        order: list[int] = []
        placed: set[int] = set()
        for t in self.tlv_order:
            if (t in by_type or t in extras) and t not in placed:
                order.append(t)
                placed.add(t)
        for spec in self._SPECS:
            if spec.tlv_type in by_type and spec.tlv_type not in placed:
                order.append(spec.tlv_type)
                placed.add(spec.tlv_type)
        for t in extras:
            if t not in placed:
                order.append(t)
                placed.add(t)
        return tuple(by_type[t] if t in by_type else extras[t] for t in order)

    def to_bytes(self) -> bytes:
        data = encode_tlvs(self.to_tlvs())
        if len(data) > MAX_DATASET_LENGTH:
            raise InvalidArgument(f"dataset of {len(data)} bytes exceeds {MAX_DATASET_LENGTH}")
        return data

    def to_hex(self) -> str:
        """Lower-case hex, as OpenThread's ``dataset active -x`` prints it."""
        return self.to_bytes().hex()

    @classmethod
    def from_tlvs(cls, tlvs: Iterable[Tlv | TypedTlv]) -> Self:
        """Build from TLVs (raw or typed MeshCoP); :class:`ParseError` if invalid."""
        raw = [t if isinstance(t, Tlv) else t.to_tlv() for t in tlvs]
        if sum(t.size for t in raw) > MAX_DATASET_LENGTH:
            raise ParseError(f"dataset exceeds {MAX_DATASET_LENGTH} bytes")
        specs = {s.tlv_type: s for s in cls._SPECS}
        values: dict[str, Any] = {}
        extras: list[Tlv] = []
        seen: set[int] = set()
        for t in raw:
            if t.extended:
                raise ParseError(f"dataset TLV type {t.type} is in extended form")
            if t.type in seen:
                raise ParseError(f"dataset holds TLV type {t.type} twice")
            seen.add(t.type)
            spec = specs.get(t.type)
            if spec is None:
                extras.append(t)
                continue
            try:
                decoded = spec.decode(t.value)
                canonical = spec.encode(_Values(decoded))
            except ParseError:
                raise
            except (InvalidArgument, ValueError, TypeError) as exc:
                raise ParseError(f"dataset TLV type {t.type}: {exc}") from exc
            if canonical != t.value:
                # e.g. a PAN ID TLV of 3 bytes: refuse rather than silently re-encode differently
                raise ParseError(f"dataset TLV type {t.type} has a non-canonical length")
            values.update(decoded)
        try:
            factory = cast("Callable[..., Self]", cls)
            return factory(extra_tlvs=tuple(extras), tlv_order=tuple(t.type for t in raw), **values)
        except (InvalidArgument, ValueError, TypeError) as exc:  # pragma: no cover
            raise ParseError(f"invalid dataset: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Self:
        return cls.from_tlvs(decode_tlvs(data))

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """From OpenThread's hex form (case-insensitive; whitespace ignored)."""
        if not isinstance(text, str):
            raise ParseError("dataset hex must be a string")
        compact = "".join(text.split())
        if len(compact) > 2 * MAX_DATASET_LENGTH:
            raise ParseError(f"dataset exceeds {MAX_DATASET_LENGTH} bytes")
        try:
            data = binascii.unhexlify(compact)
        except (binascii.Error, ValueError) as exc:
            raise ParseError("dataset is not valid hex") from exc
        return cls.from_bytes(data)

    def _repr_fields(self) -> str:
        parts = []
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "tlv_order":
                continue
            v = getattr(self, f.name)
            if v is None or (f.name == "extra_tlvs" and not v):
                continue
            if f.name in _SECRET_FIELDS:
                parts.append(f"{f.name}=[redacted]")
            elif isinstance(v, bytes):
                parts.append(f"{f.name}={v.hex()}")
            else:
                parts.append(f"{f.name}={v!r}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_fields()})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class OperationalDataset(_TlvRecord):
    """The fields an Active Operational Dataset can hold (all optional: partial datasets exist).

    ``channel_page``/``wakeup_channel_page`` only matter when the channel is set. Byte fields
    are raw: ``ext_pan_id`` 8 bytes, ``mesh_local_prefix`` the 8 prefix bytes,
    ``network_key``/``pskc`` 16 bytes.
    """

    _SPECS: ClassVar[tuple[_Spec, ...]] = (
        _TIMESTAMP,
        _CHANNEL,
        _WAKEUP,
        _MASK,
        _XPANID,
        _MLP,
        _KEY,
        _NAME,
        _PANID,
        _PSKC,
        _POLICY,
    )
    REQUIRED: ClassVar[tuple[str, ...]] = (
        "active_timestamp",
        "channel",
        "channel_mask",
        "ext_pan_id",
        "mesh_local_prefix",
        "network_key",
        "network_name",
        "pan_id",
        "pskc",
        "security_policy",
    )

    active_timestamp: Timestamp | None = None
    channel: int | None = None
    channel_page: int = 0
    wakeup_channel: int | None = None
    wakeup_channel_page: int = 0
    channel_mask: ChannelMask | None = None
    ext_pan_id: bytes | None = None
    mesh_local_prefix: bytes | None = None
    network_key: bytes | None = field(default=None, repr=False)
    network_name: str | None = None
    pan_id: int | None = None
    pskc: bytes | None = field(default=None, repr=False)
    security_policy: SecurityPolicy | None = None
    extra_tlvs: tuple[Tlv, ...] = ()
    tlv_order: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_extras()
        # Validate every field by encoding it once (InvalidArgument on a bad value).
        for spec in self._SPECS:
            spec.encode(self)

    @property
    def mesh_local_network(self) -> ipaddress.IPv6Network | None:
        """The mesh-local prefix as a /64 network."""
        if self.mesh_local_prefix is None:
            return None
        return MeshLocalPrefixTlv(self.mesh_local_prefix).network

    def missing(self) -> tuple[str, ...]:
        """Names of the fields a complete dataset needs but this one lacks."""
        return tuple(n for n in self.REQUIRED if getattr(self, n) is None)

    @property
    def is_complete(self) -> bool:
        return not self.missing()

    def meshcop_tlvs(self) -> tuple[MeshcopTlv | Tlv, ...]:
        """The dataset as typed MeshCoP TLVs (same order as :meth:`to_tlvs`)."""
        from gateway.wire.meshcop import decode_meshcop_tlvs

        return decode_meshcop_tlvs(encode_tlvs(self.to_tlvs()))


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ActiveDataset(OperationalDataset):
    """Active Operational Dataset (``dataset active``)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PendingDataset(OperationalDataset):
    """Pending Operational Dataset: an active dataset plus pending timestamp and delay (ms)."""

    # OpenThread's order: the active timestamp, the pending timestamp and delay, then the rest
    _SPECS: ClassVar[tuple[_Spec, ...]] = (
        OperationalDataset._SPECS[0],
        _PENDING_TS,
        _DELAY,
        *OperationalDataset._SPECS[1:],
    )
    REQUIRED: ClassVar[tuple[str, ...]] = (
        *OperationalDataset.REQUIRED,
        "pending_timestamp",
        "delay_timer",
    )

    pending_timestamp: Timestamp | None = None
    delay_timer: int | None = None

    def active(self) -> ActiveDataset:
        """The active dataset this pending dataset will install."""
        keep = {f.name: getattr(self, f.name) for f in fields(ActiveDataset)}
        keep["tlv_order"] = tuple(
            t for t in self.tlv_order if t not in (T.PENDING_TIMESTAMP, T.DELAY_TIMER)
        )
        return ActiveDataset(**keep)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CommissionerDataset(_TlvRecord):
    """Commissioning data (fact sheet §3.9): what MGMT_COMMISSIONER_GET/SET carry."""

    _SPECS: ClassVar[tuple[_Spec, ...]] = (
        _simple(T.BORDER_AGENT_LOCATOR, "border_agent_locator", BorderAgentLocatorTlv),
        _simple(T.COMMISSIONER_SESSION_ID, "session_id", CommissionerSessionIdTlv),
        _simple(T.STEERING_DATA, "steering_data", SteeringDataTlv),
        _simple(T.JOINER_UDP_PORT, "joiner_udp_port", JoinerUdpPortTlv),
    )

    border_agent_locator: int | None = None
    session_id: int | None = None
    steering_data: bytes | None = None
    joiner_udp_port: int | None = None
    extra_tlvs: tuple[Tlv, ...] = ()
    tlv_order: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_extras()
        for spec in self._SPECS:
            spec.encode(self)

    @property
    def joining_allowed(self) -> bool:
        """Steering data present and not all zero (OpenThread ``IsJoiningAllowed``)."""
        return self.steering_data is not None and any(self.steering_data)


# --- creation ---------------------------------------------------------------------------------


class RandomSource(Protocol):
    """What :func:`new_active_dataset` needs from a random generator
    (``secrets.SystemRandom()`` in production, a seeded ``random.Random`` in tests)."""

    def randbytes(self, n: int, /) -> bytes: ...

    def randrange(self, start: int, stop: int, /) -> int: ...


DEFAULT_CHANNELS = tuple(range(11, 27))


def _derive_pskc(passphrase: str, ext_pan_id: bytes, network_name: str) -> bytes:
    try:
        from gateway.crypto import thread_keys
    except ImportError as exc:  # pragma: no cover - depends on the crypto package
        raise InvalidArgument(
            "PSKc derivation needs gateway.crypto.thread_keys; pass pskc=... instead"
        ) from exc
    pskc: bytes = thread_keys.pskc(passphrase, network_name, ext_pan_id)
    return pskc


def new_active_dataset(
    rng: RandomSource | None = None,
    *,
    network_name: str | None = None,
    channel: int | None = None,
    pan_id: int | None = None,
    ext_pan_id: bytes | None = None,
    mesh_local_prefix: bytes | None = None,
    network_key: bytes | None = None,
    pskc: bytes | None = None,
    passphrase: str | None = None,
    active_timestamp: Timestamp | None = None,
    security_policy: SecurityPolicy | None = None,
    channel_mask: ChannelMask | None = None,
) -> ActiveDataset:
    """A complete new Active Operational Dataset, like OpenThread's ``dataset init new``.

    Unset values are drawn from ``rng`` (default: the OS CSPRNG): a random network key, PAN ID
    in 0..0xFFFE, extended PAN ID, a random RFC 4193 ``fdXX:XXXX:XXXX:XXXX::/64`` mesh-local
    prefix, a channel in 11–26 and, unless ``pskc`` or ``passphrase`` is given, a random PSKc
    (what OpenThread does too). With ``passphrase`` the PSKc is derived from it, the network
    name and the extended PAN ID (fact sheet §5.1). Defaults otherwise: network name
    ``"Gateway-<panid hex>"``, OpenThread's security policy (672 h, ``onrc``), channel mask
    11–26, active timestamp 1 s.
    """
    r: RandomSource = rng if rng is not None else secrets.SystemRandom()
    if pskc is not None and passphrase is not None:
        raise InvalidArgument("give pskc or passphrase, not both")
    if pan_id is None:
        pan_id = r.randrange(0, 0xFFFF)
    if pan_id == 0xFFFF:
        raise InvalidArgument("PAN ID 0xFFFF is the broadcast PAN")
    if channel is None:
        channel = DEFAULT_CHANNELS[r.randrange(0, len(DEFAULT_CHANNELS))]
    if ext_pan_id is None:
        ext_pan_id = r.randbytes(8)
    if mesh_local_prefix is None:
        # RFC 4193 §3.2: fd00::/8 + 40-bit random global ID + 16-bit subnet ID.
        mesh_local_prefix = b"\xfd" + r.randbytes(7)
    if network_key is None:
        network_key = r.randbytes(16)
    if network_name is None:
        network_name = f"Gateway-{pan_id:04x}"
    if pskc is None:
        pskc = (
            _derive_pskc(passphrase, ext_pan_id, network_name)
            if passphrase is not None
            else r.randbytes(16)
        )
    return ActiveDataset(
        active_timestamp=active_timestamp or Timestamp(1),
        channel=channel,
        channel_mask=channel_mask or ChannelMask.from_channels(DEFAULT_CHANNELS),
        ext_pan_id=ext_pan_id,
        mesh_local_prefix=mesh_local_prefix,
        network_key=network_key,
        network_name=network_name,
        pan_id=pan_id,
        pskc=pskc,
        security_policy=security_policy or SecurityPolicy(),
    )
