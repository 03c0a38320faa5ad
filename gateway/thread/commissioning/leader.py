"""The Leader's commissioning role (sans-IO): petitions, one active commissioner, session IDs,
the keep-alive timeout and the Commissioning Dataset (fact sheet §3.9, §4.2; OpenThread
``src/core/meshcop/meshcop_leader.cpp``, ``network_data_leader_ftd.cpp``).

* A petition is accepted when no commissioner is active, or when the active one has the same
  Commissioner ID (it is replaced). The session ID is a 16-bit counter that starts at a random
  value and is pre-incremented for each accepted petition and for each resignation or timeout.
* On acceptance the commissioning data becomes Border Agent Locator + Session ID + a 1-byte
  Steering Data ``00`` (nobody may join yet); MGMT_COMMISSIONER_SET replaces steering data and
  the joiner UDP port. On resignation or timeout it becomes just the next Session ID.
* Keep-alive: every accepted LEAD_KA restarts the timer (50 s by default); a LEAD_KA with state
  Reject resigns. :meth:`CommissioningLeader.poll` reports the expiry.

:meth:`CommissioningLeader.handle_tmf` answers the TMF requests addressed to the Leader ALOC
(LEAD_PET, LEAD_KA, MGMT_COMMISSIONER_SET/GET, MGMT_ACTIVE_GET), as a border agent or the UDP
proxy hands them over. Time is passed in.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from gateway.errors import ParseError
from gateway.wire.coap import CoapCode, TmfMessage, TmfUri, tmf_response
from gateway.wire.dataset import ActiveDataset, CommissionerDataset
from gateway.wire.meshcop import (
    BorderAgentLocatorTlv,
    CommissionerIdTlv,
    CommissionerSessionIdTlv,
    GetTlv,
    JoinerUdpPortTlv,
    MeshcopTlv,
    MeshcopTlvType,
    State,
    StateTlv,
    SteeringDataTlv,
)
from gateway.wire.tlv import Tlv, decode_tlvs, first_of

__all__ = [
    "DEFAULT_JOINER_UDP_PORT",
    "KEEP_ALIVE_TIMEOUT",
    "ActiveCommissioner",
    "CommissionerExpired",
    "CommissioningLeader",
    "PetitionResult",
    "filter_get",
]

KEEP_ALIVE_TIMEOUT = 50.0  # TIMEOUT_LEAD_PET / the border agent's kKeepAliveTimeout
DEFAULT_JOINER_UDP_PORT = 1000


@dataclass(frozen=True)
class ActiveCommissioner:
    commissioner_id: str
    session_id: int
    border_agent_locator: int
    since: float
    last_keep_alive: float


@dataclass(frozen=True)
class PetitionResult:
    accepted: bool
    session_id: int | None = None
    active_commissioner_id: str | None = None  # the one in the way when rejected

    def tlvs(self) -> list[MeshcopTlv | Tlv]:
        """The LEAD_PET/COMM_PET response TLVs (fact sheet §4.8)."""
        out: list[MeshcopTlv | Tlv] = [StateTlv(State.ACCEPT if self.accepted else State.REJECT)]
        if self.active_commissioner_id is not None:
            out.append(CommissionerIdTlv(self.active_commissioner_id))
        if self.session_id is not None:
            out.append(CommissionerSessionIdTlv(self.session_id))
        return out


@dataclass(frozen=True)
class CommissionerExpired:
    """The active commissioner sent no keep-alive within the timeout."""

    commissioner_id: str
    session_id: int


def filter_get(tlvs: Iterable[MeshcopTlv | Tlv], request_payload: bytes) -> list[Tlv]:
    """The TLVs a MGMT_*_GET asks for: all of them without a Get TLV, else those listed (raw
    TLVs, as the dataset stores them). Raises :class:`ParseError` on a malformed request."""
    raw = [t if isinstance(t, Tlv) else t.to_tlv() for t in tlvs]
    wanted: set[int] | None = None
    for t in decode_tlvs(request_payload):
        if t.type == GetTlv.TYPE:
            wanted = set(GetTlv.from_tlv(t).value)
    if wanted is None:
        return raw
    return [t for t in raw if t.type in wanted]


@dataclass
class CommissioningLeader:
    """The commissioning half of the Thread Leader."""

    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    session_counter: int | None = None
    active: ActiveCommissioner | None = None
    dataset: CommissionerDataset = field(default_factory=CommissionerDataset)
    on_change: Callable[[CommissionerDataset], None] | None = None
    petitions_accepted: int = 0
    petitions_rejected: int = 0

    def __post_init__(self) -> None:
        if self.session_counter is None:
            self.session_counter = self.rng.randrange(0, 0x10000)
        if self.dataset.session_id is None:
            self.dataset = CommissionerDataset(session_id=self.session_counter)

    def _next_session_id(self) -> int:
        assert self.session_counter is not None
        self.session_counter = (self.session_counter + 1) & 0xFFFF
        return self.session_counter

    def _set_dataset(self, ds: CommissionerDataset) -> None:
        self.dataset = ds
        if self.on_change is not None:
            self.on_change(ds)

    # -- state ------------------------------------------------------------------------------

    @property
    def joining_allowed(self) -> bool:
        return self.active is not None and self.dataset.joining_allowed

    @property
    def steering_data(self) -> bytes | None:
        return self.dataset.steering_data if self.active is not None else None

    @property
    def joiner_udp_port(self) -> int:
        port = self.dataset.joiner_udp_port
        return DEFAULT_JOINER_UDP_PORT if port is None else port

    # -- petition and keep-alive --------------------------------------------------------------

    def petition(
        self, commissioner_id: str, border_agent_locator: int, now: float
    ) -> PetitionResult:
        cur = self.active
        if cur is not None and cur.commissioner_id != commissioner_id:
            self.petitions_rejected += 1
            return PetitionResult(False, None, cur.commissioner_id)
        sid = self._next_session_id()
        self.active = ActiveCommissioner(commissioner_id, sid, border_agent_locator, now, now)
        self.petitions_accepted += 1
        self._set_dataset(
            CommissionerDataset(
                border_agent_locator=border_agent_locator,
                session_id=sid,
                steering_data=b"\x00",
            )
        )
        return PetitionResult(True, sid)

    def keep_alive(
        self, session_id: int, keep: bool, border_agent_locator: int, now: float
    ) -> bool:
        """A LEAD_KA: ``True`` (Accept) when ``session_id`` is the active session."""
        cur = self.active
        if cur is None or cur.session_id != session_id:
            return False
        if not keep:
            self.resign(now)
            return True
        self.active = replace(cur, last_keep_alive=now, border_agent_locator=border_agent_locator)
        if self.dataset.border_agent_locator != border_agent_locator:
            self._set_dataset(replace(self.dataset, border_agent_locator=border_agent_locator))
        return True

    def resign(self, now: float) -> CommissionerExpired | None:
        cur = self.active
        if cur is None:
            return None
        self.active = None
        self._set_dataset(CommissionerDataset(session_id=self._next_session_id()))
        return CommissionerExpired(cur.commissioner_id, cur.session_id)

    def set_commissioner_data(
        self, session_id: int | None, steering_data: bytes | None, joiner_udp_port: int | None,
        *, has_border_agent_locator: bool = False,
    ) -> bool:  # fmt: skip
        """MGMT_COMMISSIONER_SET: ``True`` when accepted."""
        cur = self.active
        if has_border_agent_locator or cur is None or session_id != cur.session_id:
            return False
        if steering_data is None and joiner_udp_port is None:
            return False
        ds = replace(
            self.dataset,
            steering_data=steering_data
            if steering_data is not None
            else self.dataset.steering_data,
            joiner_udp_port=joiner_udp_port
            if joiner_udp_port is not None
            else self.dataset.joiner_udp_port,
        )
        self._set_dataset(ds)
        return True

    # -- time -------------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        if self.active is None:
            return None
        return self.active.last_keep_alive + self.keep_alive_timeout

    def poll(self, now: float) -> CommissionerExpired | None:
        deadline = self.next_timeout()
        if deadline is not None and now >= deadline:
            return self.resign(now)
        return None

    # -- TMF ----------------------------------------------------------------------------------

    def handle_tmf(
        self,
        request: TmfMessage,
        now: float,
        *,
        source_rloc16: int,
        active_dataset: ActiveDataset | None = None,
    ) -> TmfMessage | None:
        """Answer a TMF request to the Leader (piggy-backed for CON, NON for NON requests);
        ``None`` when it is not one the leader serves. Malformed payloads are answered with
        4.00 Bad Request."""
        uri = request.tmf_uri
        if uri not in (
            TmfUri.LEAD_PET,
            TmfUri.LEAD_KA,
            TmfUri.MGMT_COMMISSIONER_SET,
            TmfUri.MGMT_COMMISSIONER_GET,
            TmfUri.MGMT_ACTIVE_GET,
        ):
            return None
        mid = (request.mid + 1) & 0xFFFF  # only used for NON requests
        try:
            tlvs = request.tlvs()
        except ParseError:
            return tmf_response(request, (), code=CoapCode.BAD_REQUEST, mid=mid)
        if uri is TmfUri.LEAD_PET:
            cid = first_of(tlvs, CommissionerIdTlv)
            if cid is None:
                return tmf_response(request, (), code=CoapCode.BAD_REQUEST, mid=mid)
            res = self.petition(cid.value, source_rloc16, now)
            return tmf_response(request, res.tlvs(), mid=mid)
        if uri is TmfUri.LEAD_KA:
            st = first_of(tlvs, StateTlv)
            sid = first_of(tlvs, CommissionerSessionIdTlv)
            if st is None or sid is None:
                return tmf_response(request, (), code=CoapCode.BAD_REQUEST, mid=mid)
            ok = self.keep_alive(sid.value, st.value == State.ACCEPT, source_rloc16, now)
            return tmf_response(request, [StateTlv(State.ACCEPT if ok else State.REJECT)], mid=mid)
        if uri is TmfUri.MGMT_COMMISSIONER_SET:
            sid = first_of(tlvs, CommissionerSessionIdTlv)
            sd = first_of(tlvs, SteeringDataTlv)
            jp = first_of(tlvs, JoinerUdpPortTlv)
            ok = self.set_commissioner_data(
                sid.value if sid is not None else None,
                sd.value if sd is not None else None,
                jp.value if jp is not None else None,
                has_border_agent_locator=first_of(tlvs, BorderAgentLocatorTlv) is not None,
            )
            return tmf_response(request, [StateTlv(State.ACCEPT if ok else State.REJECT)], mid=mid)
        if uri is TmfUri.MGMT_COMMISSIONER_GET:
            try:
                out = filter_get(self.dataset.to_tlvs(), request.payload)
            except ParseError:
                return tmf_response(request, (), code=CoapCode.BAD_REQUEST, mid=mid)
            return tmf_response(request, out, mid=mid)
        # MGMT_ACTIVE_GET
        if active_dataset is None:
            return tmf_response(request, (), code=CoapCode.NOT_FOUND, mid=mid)
        try:
            out = filter_get(active_dataset.to_tlvs(), request.payload)
        except ParseError:
            return tmf_response(request, (), code=CoapCode.BAD_REQUEST, mid=mid)
        policy = active_dataset.security_policy
        if policy is not None and not policy.obtain_network_key:
            # As OpenThread's leader (DatasetManager::ProcessGetRequest with the Security Policy
            # checked): without the O bit the Network Key is not handed out over TMF.
            out = [t for t in out if t.type != MeshcopTlvType.NETWORK_KEY]
        return tmf_response(request, out, mid=mid)
