# -*- coding: latin-1 -*-
import os
s = "café"
from . import sibling
