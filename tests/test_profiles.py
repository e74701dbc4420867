import pytest

from edgenas.errors import ProfileError
from edgenas.hardware.profiles import available_profiles, load_profile, load_profile_file, parse_profile


def test_shipped_profiles_load():
    names = available_profiles()
    assert {"cpu-arm", "cpu-x86"} <= set(names)
    arm = load_profile("cpu-arm")
    assert arm.execution_providers == ("CPUExecutionProvider",)
    assert (arm.intra_op_threads, arm.batch_size, arm.precision) == (1, 1, "fp32")
    assert arm.measured_on == "calibrated" and arm.latency_label == "predicted"
    assert arm.calibration_path().is_file() and arm.calibration_path("host_calibration").is_file()
    assert "Cortex-A76" in arm.target
    assert arm.has_energy and arm.calibration_path("energy_calibration").is_file()
    host = load_profile("cpu-arm-host")  # the raw host time, labelled as such
    assert host.measured_on == "host" and host.latency_label == "host-measured"
    assert {k: v for k, v in host.settings().items() if k not in ("name", "description")} == {
        **{
            k: v
            for k, v in arm.settings().items()
            if k not in ("name", "description", "host_calibration", "energy_calibration")
        },
        "measured_on": "host",
        "calibration": "",
    }
    assert "host_calibration" not in host.settings()  # unset keys stay out: older agents accept the settings


def test_fingerprint_depends_on_settings():
    arm = load_profile("cpu-arm-host")
    data = {**arm.settings(), "intra_op_threads": 2}
    other = parse_profile(data, "x")
    assert other.fingerprint() != arm.fingerprint()
    assert parse_profile(arm.settings(), "y").fingerprint() == arm.fingerprint()


def test_unknown_name_lists_available():
    with pytest.raises(ProfileError, match="available profiles: .*cpu-arm"):
        load_profile("pi-zero")


@pytest.mark.parametrize(
    "text, match",
    [
        ('name = "x"\nbogus = 1\n', "unknown key.*bogus"),
        ('name = "x\n', "not valid TOML"),
        ("name = 3\n", "key 'name'"),
        ("", "missing key 'name'"),
    ],
)
def test_bad_profile_files(tmp_path, text, match):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=match) as err:
        load_profile_file(f)
    assert str(f) in str(err.value)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("batch_size", 0, "batch_size"),
        ("batch_size", True, "batch_size"),
        ("intra_op_threads", -1, "intra_op_threads"),
        ("graph_optimization_level", "max", "graph_optimization_level"),
        ("execution_providers", [], "execution_providers"),
        ("statistic", "mean", "statistic"),
        ("precision", "fp8", "precision"),
    ],
)
def test_bad_profile_values(key, value, match):
    data = {**load_profile("cpu-arm").settings(), key: value}
    with pytest.raises(ProfileError, match=match):
        parse_profile(data, "test.toml")
