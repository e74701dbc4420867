"""Every hard limit of a search in one object, built once from the pipeline, the profile and the flags.

A hard limit is a gate: a candidate over it is rejected before it is trained. The limits come
from two places, and the tighter one wins:

  the reward settings   `--budget` / `[reward] budget_params`, `--max-latency-ms` /
                        `[reward] max_latency_ms` when `latency_limit = "hard"`, and
                        `--max-ram-kb` / `--max-flash-kb` (`[reward] max_ram_kb`, `max_flash_kb`),
                        `--max-energy-mj` (`[reward] max_energy_mj`; profiles that predict energy)
  the profile           `max_params`, `max_model_bytes`, `max_latency_ms`, and
                        `max_peak_ram_bytes` / `max_flash_bytes` less the profile's headroom
                        (the device's own)

Peak RAM and flash are estimated from the ONNX graph (`edgenas.hardware.memory`) at the
profile's precision; the RAM gate uses the graph's own execution order (what the runtime runs).

The up-front feasibility check (`check_feasible`), the controller's feasibility callback (it asks
`max_params`) and the per-child gates (`check_params`, `check_model_bytes`, `check_latency`) all
ask this object, and every rejection is worded the same way: "WHAT VALUE > LIMIT (SOURCE)".
Immutable: safe to share between threads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgenas.errors import BudgetError, ConfigError
from edgenas.hardware.profiles import Profile, load_profile
from edgenas.reward import RewardConfig
from edgenas.settings import schema

# what -> (label in reasons, unit, how to raise it in an error message)
_KINDS = {
    "params": ("params", "", "parameters"),
    "model_bytes": ("model size", " bytes", "model bytes"),
    "latency_ms": ("latency", " ms", "ms of latency"),
    "ram_bytes": ("peak RAM", " bytes", "bytes of RAM"),
    "flash_bytes": ("flash", " bytes", "bytes of flash"),
    "energy_mj": ("energy", " mJ", "mJ of energy per inference"),
}
FP32_BYTES_PER_PARAM = 4  # an fp32 ONNX file stores every parameter in 4 bytes, at least


@dataclass(frozen=True)
class Limit:
    """One hard limit: `what` <= `value`, and where it came from (`source`, as a user wrote it)."""

    what: str  # params | model_bytes | latency_ms | ram_bytes | flash_bytes | energy_mj
    value: float
    source: str  # e.g. "budget", "profile mcu-m7"
    fix: str  # how to loosen it, for error messages

    def reason(self, value: float) -> str | None:
        """Why `value` breaks this limit, or None when it does not."""
        if value <= self.value:
            return None
        label, unit, _ = _KINDS[self.what]
        return f"{label} {_fmt(value)}{unit} > {_fmt(self.value)}{unit} ({self.source})"


def _fmt(v: float) -> str:
    if float(v).is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    return f"{v:.4g}"


def _tightest(*limits: Limit | None) -> Limit | None:
    present = [lim for lim in limits if lim is not None]
    return min(present, key=lambda lim: lim.value) if present else None


@dataclass(frozen=True)
class Constraints:
    """The hard limits in force; None where there is none."""

    params: Limit | None = None
    model_bytes: Limit | None = None
    latency_ms: Limit | None = None
    ram_bytes: Limit | None = None
    flash_bytes: Limit | None = None
    precision: str = "fp32"  # the profile's: the element size memory is counted at
    energy_mj: Limit | None = None  # predicted energy per inference (profiles with energy data)

    @classmethod
    def build(cls, reward: RewardConfig, profile: Profile) -> "Constraints":
        check_energy_known(reward, profile)
        device = f"profile {profile.name}"
        budget = (
            Limit("params", reward.budget_params, "budget", "raise --budget")
            if reward.budget_params is not None
            else None
        )
        lat = (
            Limit("latency_ms", reward.max_latency_ms, "max latency", "raise --max-latency-ms")
            if reward.max_latency_ms is not None and reward.latency_limit == "hard"
            else None
        )

        def dev(what: str) -> Limit | None:
            v = getattr(profile, f"max_{what}")
            return None if v is None else Limit(what, v, device, f"choose another profile than {profile.name}")

        def flag(key: str, what: str) -> Limit | None:
            """A KiB limit given by the reward setting `key`, named by its declared flag."""
            kb = getattr(reward, key)
            name = schema.flag_name(next(f for f in dataclasses.fields(reward) if f.name == key))
            return None if kb is None else Limit(what, kb * 1024, name, f"raise {name}")

        def memory(what: str, key: str, headroom: int) -> Limit | None:
            v = getattr(profile, key)
            if v is None:
                return None
            source = device + (f", {_fmt(headroom)} bytes kept for the runtime" if headroom else "")
            return Limit(
                what, v - headroom, source, f"choose another profile than {profile.name} or lower its headroom"
            )

        return cls(
            _tightest(budget, dev("params")),
            dev("model_bytes"),
            _tightest(lat, dev("latency_ms")),
            _tightest(
                flag("max_ram_kb", "ram_bytes"),
                memory("ram_bytes", "max_peak_ram_bytes", profile.ram_headroom_bytes),
            ),
            _tightest(
                flag("max_flash_kb", "flash_bytes"),
                memory("flash_bytes", "max_flash_bytes", profile.flash_headroom_bytes),
            ),
            profile.precision,
            Limit("energy_mj", reward.max_energy_mj, "max energy", "raise --max-energy-mj")
            if reward.max_energy_mj is not None
            else None,
        )

    @property
    def needs_memory(self) -> bool:
        """Is there a RAM or flash limit (so every child's graph must be estimated)?"""
        return self.ram_bytes is not None or self.flash_bytes is not None

    @property
    def max_params(self) -> int | None:
        """The parameter limit a controller may be told (None: no limit)."""
        return None if self.params is None else int(self.params.value)

    def describe(self) -> list[str]:
        """Each limit in force, e.g. "params <= 100,000 (profile mcu-m7)"."""
        out = []
        for lim in (self.params, self.model_bytes, self.latency_ms, self.ram_bytes, self.flash_bytes, self.energy_mj):
            if lim is not None:
                label, unit, _ = _KINDS[lim.what]
                out.append(f"{label} <= {_fmt(lim.value)}{unit} ({lim.source})")
        return out

    def check_params(self, params: int) -> str | None:
        return self.params.reason(params) if self.params else None

    def check_model_bytes(self, n_bytes: int) -> str | None:
        return self.model_bytes.reason(n_bytes) if self.model_bytes else None

    def check_latency(self, latency_ms: float) -> str | None:
        return self.latency_ms.reason(latency_ms) if self.latency_ms else None

    def check_energy(self, energy_mj: float | None) -> str | None:
        return self.energy_mj.reason(energy_mj) if self.energy_mj and energy_mj is not None else None

    def check_memory(self, peak_ram_bytes: int, flash_bytes: int) -> str | None:
        """Why an estimate breaks the RAM or flash limit (the first that does), or None."""
        for lim, value in ((self.ram_bytes, peak_ram_bytes), (self.flash_bytes, flash_bytes)):
            reason = lim.reason(value) if lim else None
            if reason:
                return reason
        return None

    def check_feasible(self, smallest_params: int, space_name: str, input_elements: int | None = None) -> None:
        """Refuse limits that no network of the space can meet, before anything runs.

        `smallest_params` is the parameter count of the space's smallest network. The model-bytes
        limit is checked against its exact lower bound (every fp32 parameter takes 4 bytes in the
        file), flash against the smallest network's weights (1 byte each in int8, 4 in fp32), RAM
        against the input tensor alone (`input_elements`, which every network holds); latency
        cannot be known without timing and is left to the gate."""
        for lim, least, what in (
            (self.flash_bytes, smallest_params * (1 if self.precision == "int8" else 4), "its weights"),
            (self.ram_bytes, (input_elements or 0) * (1 if self.precision == "int8" else 4), "the input alone"),
        ):
            if lim is not None and least > lim.value:
                label = _KINDS[lim.what][0]
                raise BudgetError(
                    f"{label} limit of {_fmt(lim.value)} bytes ({lim.source}) is smaller than the smallest network in "
                    f"the '{space_name}' space needs ({what}: {least:,} bytes at {self.precision}); {lim.fix}"
                )
        if self.params is not None and smallest_params > self.params.value:
            lim = self.params
            subject = (
                f"budget of {_fmt(lim.value)} parameters"
                if lim.source == "budget"
                else f"{lim.source} allows at most {_fmt(lim.value)} parameters, which"
            )
            raise BudgetError(
                f"{subject} is smaller than the smallest network in the '{space_name}' space "
                f"({smallest_params:,} parameters); "
                + (f"raise --budget to at least {smallest_params:,}" if lim.source == "budget" else f"{lim.fix}")
            )
        if self.model_bytes is not None and FP32_BYTES_PER_PARAM * smallest_params > self.model_bytes.value:
            lim = self.model_bytes
            raise BudgetError(
                f"{lim.source} allows models of at most {_fmt(lim.value)} bytes, smaller than the smallest network "
                f"in the '{space_name}' space ({smallest_params:,} parameters = at least "
                f"{FP32_BYTES_PER_PARAM * smallest_params:,} bytes in fp32); {lim.fix}"
            )


def check_energy_known(reward: RewardConfig, profile: Profile) -> None:
    """ConfigError when the settings use energy (`--objectives ...,energy`, `--max-energy-mj`) and
    the profile has no energy data to predict it from."""
    uses = [name for name, used in (("--objectives ...energy", "energy" in (reward.objectives or ())),
                                    ("--max-energy-mj", reward.max_energy_mj is not None)) if used]  # fmt: skip
    if uses and not profile.has_energy:
        from edgenas.hardware.profiles import available_profiles

        with_energy = [n for n in sorted(available_profiles()) if _has_energy(n)]
        raise ConfigError(
            f"{' and '.join(uses)} needs energy per inference, and profile '{profile.name}' has no energy data "
            f"(no energy_calibration); use a profile that predicts energy ({', '.join(with_energy) or 'none installed'}) "
            "or leave energy out"
        )


def _has_energy(name: str) -> bool:
    try:
        return bool(load_profile(name).has_energy)
    except Exception:  # a broken profile file says so where it is used
        return False
