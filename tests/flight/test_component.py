"""The component base: its helpers before and after bind, and what it keeps on each instance."""

import pytest

from flight import registry
from flight.component import Component
from flight.model import Param

pytestmark = pytest.mark.timeout(30)


class Gauge(Component):
    PARAMS = (Param("scale", "f32", 2.0, min=0.0, max=10.0),)


def test_helpers_refuse_before_bind_and_work_after(make_vehicle):
    g = Gauge("gauge")
    for call in (lambda: g.param("scale"), lambda: g.publish("x", 1), lambda: g.read("gauge.x")):
        with pytest.raises(RuntimeError, match="not bound"):
            call()
    v, _ = make_vehicle([g])
    assert g.param("scale") == 2.0 and g.param("scale") == 2.0  # the second from the cached key
    v.fw.params.set("gauge.scale", "3.5")
    assert g.param("scale") == 3.5
    g.publish("x", 1)
    g.publish("x", 2)
    assert v.fw.store["gauge.x"] == 2 and g.read("gauge.x") == 2 and g.read("nobody.y", "none") == "none"
    with pytest.raises(KeyError):
        g.param("missing")


def test_the_base_keeps_nothing_under_a_name_a_component_type_uses():
    """The base sets its helpers' caches on every instance; a component type defining a method
    or class attribute of the same name would have it shadowed at bind."""
    own = set(vars(Gauge("probe")))
    for name in registry.known_types():
        cls = registry.resolve(name)
        clashes = sorted(own & {attr for klass in cls.__mro__[:-1] if klass is not Component
                                for attr in vars(klass)})
        assert clashes == [], f"{name} ({cls.__name__}) defines {clashes}"
