import os
from a.b import (c,
  d)
if x:
    import e
