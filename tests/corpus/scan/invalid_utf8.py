import os
x = 'ÿþ'
import sys
