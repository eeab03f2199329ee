package scaffold

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// nameRE is what a service name may be: it names a directory, a uv
// project, Bazel-style targets and (PascalCased) TypeScript classes and
// CloudFormation stacks, so it keeps to what all of them accept.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$`) })

var identifierRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })

// pythonKeywords cannot name a module: `import class` is a syntax error.
var pythonKeywords = strings.Fields(`False None True and as assert async await
	break class continue def del elif else except finally for from global if
	import in is lambda nonlocal not or pass raise return try while with yield`)

// stdlibModules are Python 3.11's sys.stdlib_module_names (without the
// private ones) plus test. The service's directory comes first on the
// import path, so a service module of one of these names would hide the
// standard library's from the app and its dependencies.
var stdlibModules = strings.Fields(`abc aifc antigravity argparse array ast
	asynchat asyncio asyncore atexit audioop base64 bdb binascii bisect
	builtins bz2 cProfile calendar cgi cgitb chunk cmath cmd code codecs codeop
	collections colorsys compileall concurrent configparser contextlib
	contextvars copy copyreg crypt csv ctypes curses dataclasses datetime dbm
	decimal difflib dis distutils doctest email encodings ensurepip enum errno
	faulthandler fcntl filecmp fileinput fnmatch fractions ftplib functools gc
	genericpath getopt getpass gettext glob graphlib grp gzip hashlib heapq hmac
	html http idlelib imaplib imghdr imp importlib inspect io ipaddress
	itertools json keyword lib2to3 linecache locale logging lzma mailbox mailcap
	marshal math mimetypes mmap modulefinder msilib msvcrt multiprocessing netrc
	nis nntplib nt ntpath nturl2path numbers opcode operator optparse os
	ossaudiodev pathlib pdb pickle pickletools pipes pkgutil platform plistlib
	poplib posix posixpath pprint profile pstats pty pwd py_compile pyclbr pydoc
	pydoc_data pyexpat queue quopri random re readline reprlib resource
	rlcompleter runpy sched secrets select selectors shelve shlex shutil signal
	site smtpd smtplib sndhdr socket socketserver spwd sqlite3 sre_compile
	sre_constants sre_parse ssl stat statistics string stringprep struct
	subprocess sunau symtable sys sysconfig syslog tabnanny tarfile telnetlib
	tempfile termios test textwrap this threading time timeit tkinter token
	tokenize tomllib trace traceback tracemalloc tty turtle turtledemo types
	typing unicodedata unittest urllib uu uuid venv warnings wave weakref
	webbrowser winreg winsound wsgiref xdrlib xml xmlrpc zipapp zipfile
	zipimport zlib zoneinfo`)

// dependencyModules are the top-level modules of what a generated service
// installs (and tests with), plus its own tests directory: a service module
// of one of these names would hide them.
var dependencyModules = strings.Fields(`annotated_types anyio aws_lambda_powertools
	aws_xray_sdk boto3 botocore click email_validator fastapi fastapi_cli h11
	httpcore httpx idna jmespath multipart pydantic pydantic_core pytest
	python_multipart sniffio starlette tests typing_extensions
	typing_inspection uvicorn wrapt`)

// ValidateName checks a service name and says what would be accepted.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("the service name is empty; name it like my-api")
	}
	if nameRE().MatchString(name) {
		return nil
	}
	hint := ""
	switch lower := strings.ToLower(name); {
	case lower != name && nameRE().MatchString(lower):
		hint = fmt.Sprintf(" (did you mean %q?)", lower)
	case name[0] >= '0' && name[0] <= '9':
		hint = " (it starts with a digit)"
	case strings.ContainsAny(name, "/\\"):
		hint = " (put the directory in --parent-dir)"
	}
	return fmt.Errorf("service name %q is not valid%s: use lower-case letters and digits, "+
		"starting with a letter, words joined by single - or _ (like my-api); "+
		"it names the directory, the uv project, the targets and the CDK classes", name, hint)
}

// ModuleFor is the Python module of a service: the name with - → _.
func ModuleFor(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// ValidateModule checks that module can be the service's Python package.
// from says where the module came from, for the message.
func ValidateModule(module, from string) error {
	fix := "choose another service name or pass --module-name"
	if from == "--module-name" {
		fix = "choose another --module-name"
	}
	switch {
	case !identifierRE().MatchString(module):
		return fmt.Errorf("%s gives the Python module name %q, which is not a Python identifier "+
			"(letters, digits and _, not starting with a digit): %s", from, module, fix)
	case slices.Contains(pythonKeywords, module):
		return fmt.Errorf("%s gives the Python module name %q, a Python keyword (import %s is a syntax error): %s",
			from, module, module, fix)
	case slices.Contains(stdlibModules, module):
		return fmt.Errorf("%s gives the Python module name %q, which would hide the standard library's %s module: %s",
			from, module, module, fix)
	case slices.Contains(dependencyModules, module):
		return fmt.Errorf("%s gives the Python module name %q, which would hide the %s package the service depends on: %s",
			from, module, module, fix)
	}
	return nil
}

// PascalCase makes a TypeScript class name of a service name:
// my-api → MyApi.
func PascalCase(name string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
