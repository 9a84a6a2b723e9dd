"""The 30-day chart of the status page: geometry for a server-drawn SVG, no script library.

Pure: plain data in (``history.daily`` rows), plain data out; ``templates/_chart.html``
draws it with autoescaped Jinja.
"""

from __future__ import annotations

from datetime import date

WIDTH, HEIGHT = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 34, 10, 36, 30


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _label(day: str) -> str:
    parsed = date.fromisoformat(day)
    return f"{parsed:%b} {parsed.day}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary(days: list[dict]) -> str:
    """One sentence that says what the chart shows, for screen readers and the figure caption."""
    reported = sum(day["reported"] for day in days)
    skipped = sum(day["skipped"] for day in days)
    text = f"Last {len(days)} days: {_plural(reported, 'order')} reported and {skipped} skipped."
    if reported or skipped:
        busiest = max(reversed(days), key=lambda day: day["reported"] + day["skipped"])
        text += f" Busiest day {_label(busiest['day'])}: {busiest['reported']} reported, {busiest['skipped']} skipped."
    return text


def chart(days: list[dict]) -> dict:
    """Stacked bars (reported below, skipped above) per day, y grid lines and weekly day ticks."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = nice_ceiling(max((day["reported"] + day["skipped"] for day in days), default=0))
    slot = plot_w / max(len(days), 1)
    bar_w = round(slot * 0.72, 2)
    base_y = TOP + plot_h

    def height(value: int) -> float:
        return round(plot_h * value / top_value, 2)

    bars = []
    for index, day in enumerate(days):
        x = round(LEFT + index * slot + (slot - bar_w) / 2, 2)
        reported_h, skipped_h = height(day["reported"]), height(day["skipped"])
        bars.append(
            {
                "x": x,
                "width": bar_w,
                "reported": {"y": round(base_y - reported_h, 2), "height": reported_h} if day["reported"] else None,
                "skipped": {"y": round(base_y - reported_h - skipped_h, 2), "height": skipped_h} if day["skipped"] else None,
                "title": f"{_label(day['day'])}: {day['reported']} reported, {day['skipped']} skipped",
            }
        )
    ticks = []
    last = len(days) - 1
    for index in range(last, -1, -7):  # today, and every week before it
        ticks.append({"x": round(LEFT + index * slot + slot / 2, 2), "label": _label(days[index]["day"]), "today": index == last})
    grid = [
        {
            "y": round(base_y - plot_h * fraction, 2),
            "label": str(int(top_value * fraction)) if top_value * fraction == int(top_value * fraction) else "",
        }
        for fraction in (0, 0.5, 1)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "top": TOP,
        "right": WIDTH - RIGHT,
        "base_y": base_y,
        "label_y": base_y + 22,
        "bars": bars,
        "ticks": ticks,
        "grid": grid,
        "summary": summary(days),
    }
