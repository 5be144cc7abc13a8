import os
from sys import path
