# coding: nonsense
import os
