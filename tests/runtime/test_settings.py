"""Settings: every default, every validation message, environment overrides, and `config set`
validating before it writes (DESIGN §5 and §8: a missing or empty file is a valid configuration;
a bad one is refused with a reason)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.runtime.paths import Paths
from gateway.runtime.settings import (
    DEFAULT_RADIO_URL,
    Settings,
    load_settings,
    parse_settings,
    write_setting,
)


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.delenv("GATEWAY_RADIO_URL", raising=False)
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "gateway.toml"))
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GATEWAY_RUNTIME_DIR", str(tmp_path / "run"))
    return Paths.from_env()


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "test.toml")
    assert info.value.exit_code == 9  # DESIGN §8: bad configuration or state
    return info.value.message


# ---------------------------------------------------------------- defaults and the environment


def check_defaults(s: Settings) -> None:
    # the documented defaults (DESIGN §3 radio URL, OpenThread's 1000-counter reserve, the
    # Thread border agent's customary port 49191)
    assert s.radio.url == DEFAULT_RADIO_URL
    assert s.radio.url.startswith("at86rf233:///dev/spidev0.0?")
    assert s.radio.tx_power_dbm == 4.0
    assert s.radio.frame_counter_reserve == 1000
    assert s.network.uplink == "auto"
    assert s.thread.network_name == ""
    assert s.thread.channel == 0
    assert s.border_router.border_agent_port == 49191
    assert s.border_router.advertise_mdns is True
    assert s.border_router.max_children == 32
    assert s.border_router.infra_interface == "" and s.border_router.thread_interface == "wpan0"
    assert s.group_owner.window_s == 120
    assert s.logging.level == "info"


def test_no_file_means_defaults(paths: Paths) -> None:
    assert not paths.config.exists()
    s = load_settings()
    check_defaults(s)
    assert s.paths == paths
    assert not paths.config.exists()  # loading never creates the file


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "[radio]\n[thread]\n"])
def test_empty_file_means_defaults(paths: Paths, text: str) -> None:
    paths.config.write_text(text)
    check_defaults(load_settings())


def test_environment_overrides(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config.write_text('[radio]\nurl = "emulated:?node=3"\ntx_power_dbm = -5\n')
    s = load_settings()
    assert s.radio.url == "emulated:?node=3"
    assert s.radio.tx_power_dbm == -5.0 and isinstance(s.radio.tx_power_dbm, float)
    monkeypatch.setenv("GATEWAY_RADIO_URL", "emulated:?node=7&port_offset=5")
    s = load_settings()
    assert s.radio.url == "emulated:?node=7&port_offset=5"  # the environment wins
    assert s.radio.tx_power_dbm == -5.0  # the rest of the file still applies
    monkeypatch.setenv("GATEWAY_RADIO_URL", "")
    assert load_settings().radio.url == "emulated:?node=3"  # empty: no override
    # the directories follow the environment too
    assert s.paths.state_dir == paths.state_dir
    assert s.paths.runtime_dir == paths.runtime_dir
    assert s.paths.config == paths.config
    assert s.paths.control_socket("radio") == paths.runtime_dir / "radio" / "control.sock"
    assert s.paths.radio_socket() == paths.runtime_dir / "radio" / "radio.sock"


def test_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GATEWAY_CONFIG", "GATEWAY_STATE_DIR", "GATEWAY_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    p = Paths.from_env()
    # DESIGN §5
    assert p.config == Path("/etc/gateway/gateway.toml")
    assert p.state_dir == Path("/var/lib/gateway")
    assert p.runtime_dir == Path("/run/gateway")
    assert p.control_socket("border-router") == Path("/run/gateway/border-router/control.sock")


def test_every_setting_read_from_the_file(paths: Paths) -> None:
    paths.config.write_text(
        """
[radio]
url = "emulated:?node=2"
tx_power_dbm = -17
frame_counter_reserve = 16
[network]
uplink = "wlan0"
[thread]
network_name = "Home-1234567890a"
channel = 26
[border_router]
border_agent_port = 1024
advertise_mdns = false
max_children = 48
infra_interface = "eth0"
thread_interface = "wpan7"
srp_port = 5353
[group_owner]
cloud_url = "coaps://cloud.invalid:5684"
window_s = 3600
[logging]
level = "DEBUG"
"""
    )
    s = load_settings()
    assert s.as_dict() == {
        "radio": {"url": "emulated:?node=2", "tx_power_dbm": -17.0, "frame_counter_reserve": 16},
        "network": {"uplink": "wlan0"},
        "thread": {"network_name": "Home-1234567890a", "channel": 26},
        "border_router": {
            "border_agent_port": 1024,
            "advertise_mdns": False,
            "max_children": 48,
            "infra_interface": "eth0",
            "thread_interface": "wpan7",
            "srp_port": 5353,
        },
        "group_owner": {"cloud_url": "coaps://cloud.invalid:5684", "window_s": 3600},
        "logging": {"level": "DEBUG"},
        "paths": {
            "config": str(paths.config),
            "state_dir": str(paths.state_dir),
            "runtime_dir": str(paths.runtime_dir),
            "factory_dir": str(paths.factory_dir),
        },
    }


# ---------------------------------------------------------------- every validation message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[radio]\nurl = ""', "[radio] url must not be empty"),
        ("[radio]\ntx_power_dbm = 4.5", "[radio] tx_power_dbm must be within -17..4 dBm"),
        ("[radio]\ntx_power_dbm = -17.5", "[radio] tx_power_dbm must be within -17..4 dBm"),
        ("[radio]\ntx_power_dbm = nan", "[radio] tx_power_dbm must be within -17..4 dBm"),
        ("[radio]\ntx_power_dbm = inf", "[radio] tx_power_dbm must be within -17..4 dBm"),
        (
            "[radio]\nframe_counter_reserve = 15",
            "[radio] frame_counter_reserve must be within 16..1000000",
        ),
        (
            "[radio]\nframe_counter_reserve = 1000001",
            "[radio] frame_counter_reserve must be within 16..1000000",
        ),
        ('[network]\nuplink = ""', "[network] uplink must be 'auto' or an interface name"),
        (
            '[network]\nuplink = "a-very-long-ifname"',
            "[network] uplink must be 'auto' or an interface name",
        ),
        (
            '[border_router]\ninfra_interface = "eth 0"',
            "[border_router] infra_interface must be a network interface name (1-15 of letters, "
            "digits, '.', '-', '_')",
        ),
        (
            '[border_router]\nthread_interface = ""',
            "[border_router] thread_interface must be a network interface name (1-15 of letters, "
            "digits, '.', '-', '_')",
        ),
        (
            '[border_router]\ninfra_interface = "wpan0"',
            "[border_router] infra_interface and thread_interface must differ",
        ),
        ("[thread]\nchannel = 10", "[thread] channel must be 0 (automatic) or within 11..26"),
        ("[thread]\nchannel = 27", "[thread] channel must be 0 (automatic) or within 11..26"),
        ("[thread]\nchannel = -1", "[thread] channel must be 0 (automatic) or within 11..26"),
        (
            '[thread]\nnetwork_name = "12345678901234567"',
            "[thread] network_name has at most 16 bytes",
        ),
        # 9 two-byte characters: 9 characters but 18 bytes (the limit is on UTF-8 bytes)
        ('[thread]\nnetwork_name = "ééééééééé"', "[thread] network_name has at most 16 bytes"),
        (
            "[border_router]\nborder_agent_port = 1023",
            "[border_router] border_agent_port must be 0 (any free port) or within 1024..65535",
        ),
        (
            "[border_router]\nborder_agent_port = 65536",
            "[border_router] border_agent_port must be 0 (any free port) or within 1024..65535",
        ),
        ("[group_owner]\nwindow_s = 9", "[group_owner] window_s must be within 10..3600"),
        ("[group_owner]\nwindow_s = 3601", "[group_owner] window_s must be within 10..3600"),
        ('[logging]\nlevel = "verbose"', "[logging] level must be debug, info, warning or error"),
        # types
        (
            "[border_router]\nadvertise_mdns = 1",
            "[border_router] advertise_mdns must be true or false",
        ),
        (
            '[border_router]\nadvertise_mdns = "yes"',
            "[border_router] advertise_mdns must be true or false",
        ),
        (
            "[border_router]\nborder_agent_port = true",
            "[border_router] border_agent_port must be an integer",
        ),
        (
            "[border_router]\nborder_agent_port = 49191.0",
            "[border_router] border_agent_port must be an integer",
        ),
        ('[thread]\nchannel = "15"', "[thread] channel must be an integer"),
        ('[radio]\ntx_power_dbm = "3"', "[radio] tx_power_dbm must be a number"),
        ("[radio]\ntx_power_dbm = false", "[radio] tx_power_dbm must be a number"),
        ("[radio]\nurl = 3", "[radio] url must be a string"),
        ('[radio]\nurl = ["a"]', "[radio] url must be a string"),
        ("[logging]\nlevel = {a = 1}", "[logging] level must be a string"),
        # structure
        ("radio = 3", "[radio] must be a table"),
        ('logging = "debug"', "[logging] must be a table"),
    ],
)
def test_validation_messages(text: str, message: str) -> None:
    assert error(text) == message


@pytest.mark.parametrize(
    "text",
    [
        "[radio]\ntx_power_dbm = 4",
        "[radio]\ntx_power_dbm = -17",
        "[radio]\nframe_counter_reserve = 16",
        "[radio]\nframe_counter_reserve = 1000000",
        '[network]\nuplink = "123456789012345"',
        "[thread]\nchannel = 0",
        "[thread]\nchannel = 11",
        '[thread]\nnetwork_name = "éééééééé"',
        "[border_router]\nborder_agent_port = 65535",
        "[group_owner]\nwindow_s = 10",
        '[logging]\nlevel = "WARNING"',
    ],
)
def test_boundaries_accepted(text: str) -> None:
    parse_settings(text)


def test_unknown_keys_with_did_you_mean() -> None:
    assert (
        error("[radio]\ntx_power = 3")
        == "unknown setting 'tx_power' in [radio]; did you mean 'tx_power_dbm'?"
    )
    assert (
        error("[thread]\nchanel = 15")
        == "unknown setting 'chanel' in [thread]; did you mean 'channel'?"
    )
    # nothing close: no suggestion
    assert error("[thread]\nzzzz = 15") == "unknown setting 'zzzz' in [thread]"
    # a sub-table is an unknown key of its section too
    assert error("[radio.extra]\na = 1") == "unknown setting 'extra' in [radio]"
    assert (
        error("[border-router]\nborder_agent_port = 1")
        == "unknown section [border-router] in test.toml; did you mean [border_router]?"
    )
    assert error("[cloud]\nurl = 'x'") == "unknown section [cloud] in test.toml"


def test_not_toml() -> None:
    msg = error("[radio\nurl = 1")
    assert msg.startswith("test.toml is not valid TOML: ")
    assert error("a = 1\na = 2").startswith("test.toml is not valid TOML: ")


def test_unreadable_files(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config.write_bytes(b'[radio]\nurl = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"^cannot read .*gateway\.toml: 'utf-8' codec"):
        load_settings()
    paths.config.unlink()
    paths.config.mkdir()
    with pytest.raises(ConfigError, match=r"^cannot read .*gateway\.toml: "):
        load_settings()
    paths.config.rmdir()
    paths.config.write_text("")

    # the tests run as root, which reads anything: simulate the permission error
    def denied(self: Path, *a: object, **k: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message == f"no permission to read {paths.config}"


def test_bad_file_message_names_the_file(paths: Paths) -> None:
    paths.config.write_text("[radio\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message.startswith(f"{paths.config} is not valid TOML")
    assert info.value.hint  # every error carries a hint


# ---------------------------------------------------------------- write_setting (gwctl config set)


def test_write_setting_creates_and_types(paths: Paths) -> None:
    s = write_setting(paths.config, "radio.tx_power_dbm", "-3.5")
    assert s.radio.tx_power_dbm == -3.5
    assert stat.S_IMODE(paths.config.stat().st_mode) == 0o644
    write_setting(paths.config, "thread.channel", "15")
    write_setting(paths.config, "border_router.advertise_mdns", "false")
    write_setting(paths.config, "network.uplink", "eth0")  # a bare word is a string
    write_setting(paths.config, "thread.network_name", '"My Home"')
    write_setting(paths.config, "thread.network_name", '"quote\\"d"')
    s = load_settings()
    assert s.thread.network_name == 'quote"d'
    # escapes survive the round trip through the file
    write_setting(paths.config, "thread.network_name", '"two\\nlines\\\\"')
    assert load_settings().thread.network_name == "two\nlines\\"
    # DEL cannot appear raw in a TOML string: it is written escaped
    write_setting(paths.config, "thread.network_name", '"a\\u007fb"')
    assert load_settings().thread.network_name == "a\x7fb"
    write_setting(paths.config, "thread.network_name", '"quote\\"d"')
    s = load_settings()
    assert s.radio.tx_power_dbm == -3.5
    assert s.thread.channel == 15
    assert s.border_router.advertise_mdns is False
    assert s.network.uplink == "eth0"
    assert s.thread.network_name == 'quote"d'


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("radio.tx_power_dbm", "10", "[radio] tx_power_dbm must be within -17..4 dBm"),
        (
            "radio.tx_power",
            "1",
            "unknown setting 'tx_power' in [radio]; did you mean 'tx_power_dbm'?",
        ),
        ("thread.channel", "fifteen", "[thread] channel must be an integer"),
        ("radios.url", "x", "unknown section [radios] in {path}; did you mean [radio]?"),
        ("radio", "1", "'radio': use section.key, e.g. radio.tx_power_dbm"),
        (".url", "1", "'.url': use section.key, e.g. radio.tx_power_dbm"),
        ("network.uplink", "[1, 2]", "[network] uplink must be a string"),
        ("thread.network_name", "{a = 1}", "[thread] network_name must be a string"),
    ],
)
def test_write_setting_validates_before_writing(
    paths: Paths, dotted: str, value: str, message: str
) -> None:
    write_setting(paths.config, "radio.tx_power_dbm", "1")
    before = paths.config.read_bytes()
    st = paths.config.stat()
    with pytest.raises(ConfigError) as info:
        write_setting(paths.config, dotted, value)
    assert info.value.message == message.format(path=paths.config)
    assert paths.config.read_bytes() == before  # nothing written
    assert paths.config.stat().st_ino == st.st_ino  # not even replaced
    assert not [p for p in paths.config.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_setting_refuses_to_edit_a_broken_file(paths: Paths) -> None:
    for broken, setting, message in (
        ("[radio\n", "radio.tx_power_dbm", f"{paths.config} is not valid TOML"),
        ("radio = 3\n", "radio.tx_power_dbm", "[radio] must be a table"),
        ("radio = 3\n", "thread.channel", "[radio] must be a table"),
    ):
        paths.config.write_text(broken)
        with pytest.raises(ConfigError) as info:
            write_setting(paths.config, setting, "15")
        assert info.value.message.startswith(message)
        assert paths.config.read_text() == broken


def test_write_setting_keeps_other_settings(paths: Paths) -> None:
    paths.config.write_text('[radio]\nurl = "emulated:?node=4"\n[logging]\nlevel = "debug"\n')
    write_setting(paths.config, "radio.tx_power_dbm", "0")
    s = load_settings()
    assert s.radio.url == "emulated:?node=4"
    assert s.logging.level == "debug"
    assert s.radio.tx_power_dbm == 0.0
    assert os.access(paths.config, os.R_OK)


HAND_EDITED = """\
# gateway.toml of the box in the lab: edited by hand, keep these notes.

[radio]
# the module on SPI0
url = "at86rf233:///dev/spidev0.0?gpiochip=/dev/gpiochip0&irq=23&reset=24&slp_tr=25"
tx_power_dbm = 0   # dBm; 4 is the maximum

[logging]
level = "info"

# the Thread side
[thread]
network_name = "Lab"
channel = 15  # quiet here
"""


def test_write_setting_keeps_comments_and_key_order(paths: Paths) -> None:
    paths.config.write_text(HAND_EDITED)
    write_setting(paths.config, "radio.tx_power_dbm", "-3")
    write_setting(paths.config, "thread.channel", "20")
    write_setting(paths.config, "logging.level", "debug")
    write_setting(paths.config, "network.uplink", "eth0")  # a table the file does not have
    write_setting(paths.config, "radio.frame_counter_reserve", "2000")  # a key new to its table
    text = paths.config.read_text()
    expected = (
        HAND_EDITED.replace("tx_power_dbm = 0   #", "tx_power_dbm = -3   #")
        .replace("channel = 15  #", "channel = 20  #")
        .replace('level = "info"', 'level = "debug"')
        .replace("maximum\n", "maximum\nframe_counter_reserve = 2000\n")
    )
    assert text.startswith(expected)
    assert text[len(expected) :].strip() == '[network]\nuplink = "eth0"'
    s = load_settings()
    assert (s.radio.tx_power_dbm, s.thread.channel, s.logging.level) == (-3.0, 20, "debug")
    assert (s.network.uplink, s.radio.frame_counter_reserve) == ("eth0", 2000)
