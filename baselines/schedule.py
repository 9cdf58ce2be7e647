"""DrQ-v2's exploration-noise schedules, apart from torch so that checking a config (the
workflow checks every cell at parse time) never imports it."""
import re

_LINEAR = re.compile(r"linear\((.+),(.+),(.+)\)")
_STEP_LINEAR = re.compile(r"step_linear\((.+),(.+),(.+),(.+),(.+)\)")


def check_schedule(schedule: str) -> None:
    """Refuse a schedule string `schedule()` would not understand, naming the accepted forms."""
    try:
        float(schedule)
        return
    except ValueError:
        pass
    if not (_LINEAR.fullmatch(schedule) or _STEP_LINEAR.fullmatch(schedule)):
        raise ValueError(
            f"stddev_schedule {schedule!r} is not a number, 'linear(init,final,duration)' "
            "or 'step_linear(init,final1,duration1,final2,duration2)'"
        )


def schedule(schdl: str | float, step: int) -> float:
    """DrQ-v2's exploration schedule; durations count agent steps, not frames."""
    try:
        return float(schdl)
    except ValueError:
        pass
    match = _LINEAR.fullmatch(schdl)
    if match:
        init, final, duration = (float(g) for g in match.groups())
        mix = min(max(step / duration, 0.0), 1.0)
        return (1.0 - mix) * init + mix * final
    match = _STEP_LINEAR.fullmatch(schdl)
    if match:
        init, final1, duration1, final2, duration2 = (float(g) for g in match.groups())
        if step <= duration1:
            mix = min(max(step / duration1, 0.0), 1.0)
            return (1.0 - mix) * init + mix * final1
        mix = min(max((step - duration1) / duration2, 0.0), 1.0)
        return (1.0 - mix) * final1 + mix * final2
    raise ValueError(f"unknown stddev schedule {schdl!r}")
