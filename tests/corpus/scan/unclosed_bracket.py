import os
x = ((((
import sys
