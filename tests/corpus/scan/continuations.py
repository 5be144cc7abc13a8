import \
  os, \
  sys
from a \
 import (b,
 c)
