print "hi"
exec "import x"
import y
