"""Recent sales of one SKU per location: the sales rate behind stock levels in days of cover.

Units sold (sales and fulfilled reservations, gross of returns) are summed per location and event-time day over
the last SALES_DAYS days, ending with the day of the SKU's newest event. A bounded record whatever the history:
at most SALES_DAYS numbers per location that sold. Order independent: the newest day only moves forward, and a
sale lands in its own day's sum if that day is still in the window (a day that has left it is gone for every
order of arrival alike). A rate is therefore as fresh as the SKU's newest event: a SKU that stops moving keeps
the rate it had."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000
SALES_DAYS = 28  # the longest window a network may average sales over (network.sales_window_days)


@dataclass
class RecentSales:
    day: int = 0  # the epoch day (event time) that each location's first number is for
    # location -> units sold on `day`, the day before, ... (at most SALES_DAYS numbers; trailing zero days dropped)
    units: dict[str, list[int]] = field(default_factory=dict)

    def advance(self, at_ms: int) -> None:
        """Move the window's newest day to the day of `at_ms` if that is later: days that leave the window go."""
        day = at_ms // DAY_MS
        if day <= self.day:
            return
        shift, self.day = day - self.day, day
        for location, days in list(self.units.items()):
            kept = days[:max(0, SALES_DAYS - shift)]
            while kept and kept[-1] == 0:
                kept.pop()
            if kept:
                self.units[location] = [0] * min(shift, SALES_DAYS) + kept
            else:
                del self.units[location]

    def add(self, location: str, at_ms: int, units: int) -> None:
        """`units` sold at `location` at event time `at_ms`."""
        self.advance(at_ms)
        age = self.day - at_ms // DAY_MS
        if age >= SALES_DAYS or units <= 0:
            return
        days = self.units.setdefault(location, [])
        if len(days) <= age:
            days.extend([0] * (age + 1 - len(days)))
        days[age] += units

    def sold(self, location: str, window_days: int) -> int:
        """Units sold at `location` in the last `window_days` days (the newest day counted whole)."""
        return sum(self.units.get(location, ())[:window_days])

    def per_day(self, location: str, window_days: int) -> float:
        """The sales rate at `location`: units sold per day over the last `window_days` days."""
        return self.sold(location, window_days) / window_days

    def copy(self) -> RecentSales:
        return RecentSales(self.day, {location: list(days) for location, days in self.units.items()})
