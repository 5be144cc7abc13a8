from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import heavy
def f():
    import lazy
