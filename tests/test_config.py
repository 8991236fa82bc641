"""`appliance config check` and the config loader: every error exits 2 and names the key."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping, load_config, load_config_or_defaults
from tests.transport.test_transport_mqtt_tls import make_pki

REPO = Path(__file__).resolve().parents[1]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without the APPLIANCE variables of the host, plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    full_env.update(env or {})
    return full_env


def run_check_process(
    path: Path | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m appliance config check PATH` as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", "config", "check", str(path)],
        capture_output=True,
        text=True,
        env={**_environment(env), "PYTHONPATH": str(REPO)},
        check=False,
        timeout=60,
    )


def run_check(
    path: Path | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`config check PATH` in this process: ``main`` as `python -m appliance` runs it, in the
    environment run_check_process gives its child, its standard output and error (log lines
    included) read as a child's would be. The tests of the command's own process (the shipped
    config, the environment, the password) start one; a child costs ~0.3 CPU-s more a check."""
    stdout, stderr = io.StringIO(), io.StringIO()
    logs = logging.StreamHandler(stderr)
    logging.getLogger().addHandler(logs)
    try:
        with mock.patch.dict(os.environ, _environment(env), clear=True), \
                contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["config", "check", str(path)])
    finally:
        logging.getLogger().removeHandler(logs)
    return subprocess.CompletedProcess(["config", "check", str(path)], code,
                                       stdout.getvalue(), stderr.getvalue())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_default_config_is_valid() -> None:
    result = run_check_process(REPO / "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "camera synthetic" in result.stdout
    assert "127.0.0.1:1883" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ("mqtt:\n  prot: 1883\n", "mqtt.prot", "unknown key"),
        ("mqtt:\n  port: eighteen\n", "mqtt.port", "'eighteen'"),
        ("mqtt:\n  port: 70000\n", "mqtt.port", "70000"),
        ("camera:\n  limit: 0\n", "camera.limit", "greater than or equal to 1"),
        ("camera:\n  source: webcam\n", "camera.source", "'uvc', 'directory' or 'synthetic'"),
        ("skin:\n  um_per_px: -3\n", "skin.um_per_px", "-3"),
        ("device:\n  id: 'has space'\n", "device.id", "has space"),
        ("mqtt:\n  tls:\n    cert_file: /c.pem\n", "mqtt.tls", "cert_file and mqtt.tls.key_file"),
        ("camera:\n  source: uvc\n", "camera", "camera.path is required"),
        ("mqtt:\n  password: hunter2\n", "mqtt", "APPLIANCE_MQTT_PASSWORD"),
        ("console:\n  answers_in_flight_per_user: 0\n", "console.answers_in_flight_per_user",
         "greater than or equal to 1"),
        # a user holding every one of the console's 64 places would refuse everyone else 503
        ("console:\n  answers_in_flight_per_user: 64\n", "console.answers_in_flight_per_user",
         "less than or equal to 48"),
        ("backoffice:\n  dead_letter_max_bytes: 65536\n", "backoffice.dead_letter_max_bytes",
         "65536 is less than 262144, the largest result the broker delivers"),
        # SQLite takes 64-bit integers only: larger bounds lost every dead letter
        ("backoffice:\n  dead_letter_max_rows: 100000000000000000000\n",
         "backoffice.dead_letter_max_rows", "less than or equal to 4611686018427387904"),
        ("backoffice:\n  dead_letter_max_total_bytes: 100000000000000000000\n",
         "backoffice.dead_letter_max_total_bytes", "less than or equal to 4611686018427387904"),
        ("backoffice:\n  dead_letter_max_total_bytes: 0\n",
         "backoffice.dead_letter_max_total_bytes", "0 is less than dead_letter_max_bytes (262144), "
         "the largest single dead letter"),
        ("backoffice:\n  dead_letter_max_bytes: 300000\n  dead_letter_max_total_bytes: 290000\n",
         "backoffice.dead_letter_max_total_bytes", "290000 is less than dead_letter_max_bytes "
         "(300000)"),
    ],
)
def test_bad_value_exits_2_naming_key_value_and_expectation(
    tmp_path: Path, text: str, key: str, detail: str
) -> None:
    result = run_check(write(tmp_path, text))
    assert result.returncode == 2
    assert f"{key}:" in result.stderr
    assert detail in result.stderr
    assert "Traceback" not in result.stderr


def test_password_is_never_echoed(tmp_path: Path) -> None:
    result = run_check_process(write(tmp_path, "mqtt:\n  password: hunter2\n"))
    assert "hunter2" not in result.stderr + result.stdout


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_check_process(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "not found" in result.stderr


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    result = run_check(write(tmp_path, "device:\n  id: a\nmqtt:\n  port: [1883\n  host: x\n"))
    assert result.returncode == 2
    assert "broken YAML at line" in result.stderr
    line = int(result.stderr.split("line ")[1].split(":")[0])
    assert 4 <= line <= 6


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    result = run_check(write(tmp_path, "- a\n- b\n"))
    assert result.returncode == 2
    assert "mapping" in result.stderr


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"mqtt": {"port": 0, "hots": "x"}}, environ={})
    assert "mqtt.port" in str(info.value)
    assert "mqtt.hots" in str(info.value)


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    env = {
        "APPLIANCE__MQTT__PORT": "1884",
        "APPLIANCE__MQTT__TLS__ENABLED": "true",
        "APPLIANCE__CAMERA__LIMIT": "3",
    }
    config = load_config(write(tmp_path, "mqtt:\n  port: 1883\n"), environ=env)
    assert config.mqtt.port == 1884
    assert config.mqtt.tls.enabled is True
    assert config.camera.limit == 3


def test_bad_environment_override_names_the_key(tmp_path: Path) -> None:
    result = run_check_process(write(tmp_path, "{}\n"), env={"APPLIANCE__MQTT__PORT": "0"})
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "state_dir: st\nmodel:\n  path: m.onnx\n"), environ={})
    assert config.state_dir == str(tmp_path / "st")
    assert config.model.path == str(tmp_path / "m.onnx")


def test_pathology_paths_resolve_against_the_config_file_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # another folder than the config file's
    config = load_config(write(folder, (
        "pathology:\n  results_dir: out\n  model: m.onnx\n  int8_model: ../m8.onnx\n"
        "  slide_roots: [slides, /srv/slides]\n")), environ={})
    assert config.pathology.results_dir == str(folder / "out")
    assert config.pathology.model == str(folder / "m.onnx")
    assert config.pathology.int8_model == str(tmp_path / "m8.onnx")
    assert config.pathology.slide_roots == [str(folder / "slides"), "/srv/slides"]
    overridden = load_config(folder / "config.yaml",
                             environ={"APPLIANCE__PATHOLOGY__RESULTS_DIR": "from-env"})
    assert overridden.pathology.results_dir == str(folder / "from-env")
    defaults = load_config_or_defaults(None, environ={})  # no config.yaml here: this folder
    assert defaults.pathology.results_dir == str(tmp_path / "state" / "pathology")


def test_a_sqlite_store_resolves_against_the_config_file_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store: {url: sqlite:///store.db}` opened ./store.db: the same config run by systemd
    (working folder /) and from a shell read two different stores, one of them new and empty."""
    folder = tmp_path / "etc"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # another folder than the config file's
    config = load_config(write(folder, "store:\n  url: sqlite:///store.db\n"), environ={})
    assert config.store.url == f"sqlite:///{folder / 'store.db'}"
    for url in ("sqlite:////srv/store.db", "postgresql://bo@db.fleet.internal/appliance"):
        assert load_config(write(folder, f"store:\n  url: {url}\n"), environ={}).store.url == url
    defaults = load_config_or_defaults(None, environ={"APPLIANCE__STORE__URL": "sqlite:///s.db"})
    assert defaults.store.url == f"sqlite:///{tmp_path / 's.db'}"  # no config.yaml: this folder


def test_tls_files_resolve_against_the_config_file_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # another folder than the config file's
    config = load_config(write(folder, (
        "mqtt:\n  tls:\n    enabled: true\n    ca_file: pki/ca.crt\n"
        "    cert_file: ../kiosk.crt\n    key_file: /secrets/kiosk.key\n")), environ={})
    tls = config.mqtt.tls
    assert tls.ca_file == str(folder / "pki" / "ca.crt")
    assert tls.cert_file == str(tmp_path / "kiosk.crt")
    assert tls.key_file == "/secrets/kiosk.key"
    overridden = load_config(folder / "config.yaml",
                             environ={"APPLIANCE__MQTT__TLS__CA_FILE": "from-env.crt"})
    assert overridden.mqtt.tls.ca_file == str(folder / "from-env.crt")
    defaults = load_config_or_defaults(None, environ={"APPLIANCE__MQTT__TLS__CA_FILE": "ca.crt"})
    assert defaults.mqtt.tls.ca_file == str(tmp_path / "ca.crt")  # no config.yaml: this folder


def test_config_check_finds_a_ca_file_next_to_the_config_from_any_folder(tmp_path: Path) -> None:
    config = write(tmp_path, "mqtt:\n  tls:\n    enabled: true\n    ca_file: ca.crt\n")
    missing = run_check(config)  # run from the repository, not from tmp_path
    assert missing.returncode == 2
    assert f"mqtt.tls.ca_file: file not found: {tmp_path / 'ca.crt'}" in missing.stderr
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")  # there, but no CA
    broken = run_check(config)
    assert broken.returncode == 2
    assert f"mqtt.tls.ca_file {tmp_path / 'ca.crt'}: not a usable CA certificate" in broken.stderr
    make_pki(tmp_path)  # writes a real ca.crt
    found = run_check(config)
    assert found.returncode == 0, found.stderr


def test_config_check_refuses_a_reference_file_the_kiosk_screen_could_not_use(
    tmp_path: Path,
) -> None:
    """The daemon refuses such a file at start (exit 2): the check run after an edit must too."""
    config = write(tmp_path, "model: {path: null}\nscreen:\n  reference_file: reference.json\n")
    missing = run_check(config)
    assert missing.returncode == 2
    assert f"screen.reference_file: file not found: {tmp_path / 'reference.json'}" in missing.stderr
    (tmp_path / "reference.json").write_text(
        '{"bands": {"40-49": {"kime_score": {"mean": NaN, "sd": 9.0, "n": 12}}}}')
    broken = run_check(config)
    assert broken.returncode == 2
    assert "reference.json: not a reference-range file" in broken.stderr
    assert "bands.40-49.kime_score.mean" in broken.stderr
    (tmp_path / "reference.json").write_text(
        '{"bands": {"40-49": {"kime_score": {"mean": 61.0, "sd": 9.0, "n": 12}}}}')
    found = run_check(config)
    assert found.returncode == 0, found.stderr


def test_config_check_refuses_a_sqlite_store_that_is_a_folder(tmp_path: Path) -> None:
    """`store: {url: sqlite:///state}` (the folder, not a file in it) passed the check, and
    `appliance backoffice` then refused it at start; a file not made yet is fine."""
    config = write(tmp_path, "model: {path: null}\nstore:\n  url: sqlite:///state\n")
    (tmp_path / "state").mkdir()
    refused = run_check(config)
    assert refused.returncode == 2
    assert (f"store.url: {tmp_path / 'state'} is a folder, not a store file: name the SQLite "
            "file in it") in refused.stderr
    config = write(tmp_path, "model: {path: null}\nstore:\n  url: sqlite:///state/bo.db\n")
    assert run_check(config).returncode == 0


def test_config_check_refuses_a_state_dir_that_is_no_folder(tmp_path: Path) -> None:
    """`state_dir: /dev/null` passed the check; every daemon then failed at start with
    "cannot create the lock file ... (File exists)"."""
    for state_dir, named in (("/dev/null", "/dev/null is a character device"),
                             ("notes.txt", f"{tmp_path / 'notes.txt'} is a file")):
        (tmp_path / "notes.txt").write_text("x")
        refused = run_check(write(tmp_path, f"model: {{path: null}}\nstate_dir: {state_dir}\n"))
        assert refused.returncode == 2
        assert f"state_dir: {named}, not a folder" in refused.stderr
    assert run_check(write(tmp_path, "model: {path: null}\nstate_dir: new/state\n")).returncode == 0


def test_config_check_says_what_is_there_in_place_of_a_named_file(tmp_path: Path) -> None:
    """A folder, a device or a pipe at model.path was 'file not found' (it is there)."""
    (tmp_path / "models").mkdir()
    os.mkfifo(tmp_path / "ranges.fifo")
    (tmp_path / "slides").mkdir()
    refused = run_check(write(tmp_path, "model: {path: models}\nscreen: {reference_file: "
                              "ranges.fifo}\npathology: {slide_roots: [slides], "
                              "int8_model: /dev/null}\n"))
    assert refused.returncode == 2
    assert f"model.path: {tmp_path / 'models'} is a folder, not a file" in refused.stderr
    assert (f"screen.reference_file: {tmp_path / 'ranges.fifo'} is a named pipe (FIFO), "
            "not a file") in refused.stderr
    refused = run_check(write(tmp_path, "model: {path: null}\npathology: {slide_roots: "
                              "[slides], int8_model: /dev/null}\n"))
    assert "pathology.int8_model: /dev/null is a character device, not a file" in refused.stderr
    assert "not found" not in refused.stderr


def test_config_check_names_a_symbolic_link_loop_in_place_of_a_named_file(tmp_path: Path) -> None:
    """A relative path in a link loop ended config check (and every command reading the config)
    in a RuntimeError traceback from Path.resolve; a store or state_dir in one passed as ok."""
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    loop = f"{tmp_path / 'a'} is a symbolic link loop (the link leads back to itself)"
    refused = run_check(write(tmp_path, "model: {path: a}\nscreen: {reference_file: b}\n"))
    assert refused.returncode == 2, refused.stderr
    assert f"model.path: {loop}, not a file" in refused.stderr
    assert "Traceback" not in refused.stderr
    refused = run_check(write(tmp_path, "model: {path: null}\nstate_dir: a\n"))
    assert refused.returncode == 2, refused.stderr
    assert f"state_dir: {loop}, not a folder" in refused.stderr
    refused = run_check(write(tmp_path, "model: {path: null}\nstore: {url: 'sqlite:///a'}\n"))
    assert refused.returncode == 2, refused.stderr
    assert f"store.url: {loop}, so no store file" in refused.stderr


def test_password_from_env_or_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_from_mapping({}, environ={})
    monkeypatch.delenv("APPLIANCE_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert config.mqtt.password() is None
    (tmp_path / "mqtt-password").write_text("from-systemd\n")
    assert config.mqtt.password() == "from-systemd"
    monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", "from-env")
    assert config.mqtt.password() == "from-env"


def test_the_back_office_keeps_whole_any_result_the_shipped_broker_delivers() -> None:
    """A refused result is confirmed to its kiosk only when its dead letter holds it whole."""
    conf = (REPO / "deploy" / "mosquitto" / "appliance.conf").read_text().splitlines()
    (limit,) = [line.split()[1] for line in conf if line.startswith("message_size_limit ")]
    defaults = config_from_mapping({}, environ={})
    assert defaults.backoffice.dead_letter_max_bytes == int(limit)
    shipped = load_config(REPO / "config.yaml", environ={})
    assert shipped.backoffice.dead_letter_max_bytes >= int(limit)


def test_a_login_s_share_of_the_retained_requests_is_at_most_all_of_them(tmp_path: Path) -> None:
    refused = run_check(write(tmp_path, "pathology: {max_retained_requests: 10, "
                                        "max_retained_requests_per_login: 11}\n"))
    assert refused.returncode == 2
    assert ("pathology.max_retained_requests_per_login (11) must be at most "
            "pathology.max_retained_requests (10)") in refused.stderr, refused.stderr
    assert run_check(write(tmp_path, "pathology: {max_retained_requests_per_login: 0}\n")
                     ).returncode == 2
    capped = config_from_mapping({"pathology": {"max_retained_requests": 10}})
    assert capped.pathology.retained_requests_per_login_limit == 10  # the default 100, capped
    assert config_from_mapping({}).pathology.retained_requests_per_login_limit == 100


def test_a_slide_preparation_time_limit_is_checked_as_a_number_of_seconds(
    tmp_path: Path,
) -> None:
    for value in ("0", "0.5", "1:30", "100000"):  # under 1 s, base 60, over a day
        refused = run_check(write(tmp_path, f"pathology: {{prepare_timeout_s: {value}}}\n"))
        assert refused.returncode == 2, (value, refused.stdout)
        assert "pathology.prepare_timeout_s" in refused.stderr, refused.stderr
    assert run_check(write(tmp_path, "pathology: {prepare_timeout_s: 60}\n")).returncode == 0
    assert config_from_mapping({}).pathology.prepare_timeout_s == 900
