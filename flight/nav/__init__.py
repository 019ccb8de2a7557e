"""Navigation: pose filter, stereo hazard map, planner, path follower and the nav component."""

from flight.nav.component import Navigator, OdometryNavigator

__all__ = ["Navigator", "OdometryNavigator"]
