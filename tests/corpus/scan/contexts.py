"""Every context the scanner flags, and the statements that only look like imports."""
import a.b as c, d; from .. import (x,
    y as z,)
from .m import *
if TYPE_CHECKING:
    import t1
elif typing.TYPE_CHECKING:
    import t2
else:
    import t3
try:
    import fast
    from pkg import quick as q
except (ValueError, ImportError):
    import slow
else:
    import after_try
finally:
    import always
try:
    import unguarded
except KeyError:
    pass
while cond:
    import in_loop
for i in range(3):
    import in_for
def f():
    import in_def
    g = lambda: __import__('in_lambda')
    class C:
        import in_class_in_def
    yield from gen
    raise E from err
class K:
    import in_class
async def co():
    import in_async
    async with m:
        import in_async_with
match cmd:
    case 1:
        import in_case
with ctx: import on_header_line
h = importlib.import_module("pkg.mod")
h2 = importlib.import_module('..rel', __package__)
h3 = __import__("con" "cat")
h4 = obj.importlib.import_module("not_dynamic")
h5 = __import__(f"not_literal")
h6 = importlib.import_module(b"bytes_no")
x = lambda m: import_module("inline", m) if m else None
s = "import not_an_import"
t = f"{__import__('in_fstring')}"
def __import__(name): pass
from\
  backslash import joined
if x: import one_line_if
