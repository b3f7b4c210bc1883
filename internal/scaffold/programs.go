package scaffold

// Entry programs per language and preset. Placeholders: @NAME@ (the project name), @PORT@,
// @HEALTH@ (the health path), @INTERVAL@ (worker seconds). Values are validated before they
// are substituted (names are [a-z0-9-], paths have no quotes or backslashes), so they are safe
// inside the double-quoted string literals of every language here; shell uses single quotes.
var programs = map[string]map[string]string{
	"python": {
		"minimal": `"""@NAME@: prints a greeting and exits; the VM powers off when the entry returns."""

print("Hello from @NAME@!", flush=True)
`,
		"worker": `"""@NAME@: a worker that prints a tick every WORKER_INTERVAL_S seconds until SIGTERM."""
import os
import signal
import sys
import threading

stop = threading.Event()


def on_signal(signum, frame):
    stop.set()


def main():
    interval = float(os.environ.get("WORKER_INTERVAL_S", "@INTERVAL@"))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    n = 0
    while not stop.is_set():
        n += 1
        print(f"tick {n}", flush=True)
        stop.wait(interval)
    print("worker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
`,
		"http": `"""@NAME@: serves HTTP on $PORT; 200 on / and on the health path."""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

PORT = int(os.environ.get("PORT", "@PORT@"))
HEALTH_PATH = "@HEALTH@"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if urlsplit(self.path).path not in ("/", HEALTH_PATH):
            self.send_error(404)
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def on_signal(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_signal)
    server = HTTPServer(("0.0.0.0", PORT), Handler)
    print(f"listening on {PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
`,
		"python": `"""@NAME@: a small Python web app (standard library only) on $PORT.

GET /            -> JSON about the app
GET @HEALTH@ -> {"status": "ok"} for the health check
Add dependencies with 'ukernel env add NAME==VERSION'.
"""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

NAME = "@NAME@"
PORT = int(os.environ.get("PORT", "@PORT@"))
HEALTH_PATH = "@HEALTH@"


def index():
    return {"app": NAME, "python": sys.version.split()[0]}


def health():
    return {"status": "ok"}


ROUTES = {"/": index, HEALTH_PATH: health}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        route = ROUTES.get(urlsplit(self.path).path)
        if route is None:
            self.send_json(404, {"error": "not found"})
            return
        self.send_json(200, route())

    def send_json(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_signal)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"{NAME} listening on {PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
`,
		"flask": `"""@NAME@: a Flask app on $PORT, served by waitress (a production WSGI server).

GET /            -> JSON about the app
GET @HEALTH@ -> {"status": "ok"} for the health check
Add dependencies with 'ukernel env add NAME==VERSION'.
"""
import os
import signal
import sys
from urllib.parse import unquote

from flask import Flask
from waitress import serve

NAME = "@NAME@"
PORT = int(os.environ.get("PORT", "@PORT@"))
HEALTH_PATH = "@HEALTH@"

app = Flask(NAME)


@app.get("/")
def index():
    return {"app": NAME, "python": sys.version.split()[0]}


def health():
    return {"status": "ok"}


if HEALTH_PATH != "/":
    # Flask matches the decoded path.
    app.add_url_rule(unquote(HEALTH_PATH), "health", health)


def on_signal(signum, frame):
    raise KeyboardInterrupt


def main():
    # waitress stops serving on KeyboardInterrupt: SIGTERM ends the entry with 0.
    signal.signal(signal.SIGTERM, on_signal)
    print(f"{NAME} listening on {PORT}", flush=True)
    serve(app, host="0.0.0.0", port=PORT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
`,
	},
	"shell": {
		"minimal": `#!/bin/sh
# @NAME@: prints a greeting and exits; the VM powers off when the entry returns.
echo "Hello from @NAME@!"
`,
		"worker": `#!/bin/sh
# @NAME@: a worker that prints a tick every WORKER_INTERVAL_S seconds until SIGTERM.
set -u
interval=${WORKER_INTERVAL_S:-@INTERVAL@}
running=1
trap 'running=0' TERM INT
n=0
while [ "$running" = 1 ]; do
	n=$((n + 1))
	echo "tick $n"
	# sleep in the background so the trap runs as soon as a signal arrives
	sleep "$interval" &
	wait $! || true
done
echo "worker stopped"
`,
		"http": `#!/bin/sh
# @NAME@: serves the files under src/www (installed at /app/www) on $PORT with busybox httpd;
# / and the health path @HEALTH@ answer 200.
set -eu
exec busybox httpd -f -p "${PORT:-@PORT@}" -h /app/www
`,
		"postgres": postgresScript,
	},
	"go": {
		"minimal": `// Command @NAME@ prints a greeting and exits; the VM powers off when the entry returns.
package main

import "fmt"

func main() {
	fmt.Println("Hello from @NAME@!")
}
`,
		"worker": `// Command @NAME@ is a worker that prints a tick every WORKER_INTERVAL_S seconds until SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	interval := @INTERVAL@ * time.Second
	if s := os.Getenv("WORKER_INTERVAL_S"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "WORKER_INTERVAL_S=%q: expected a positive number of seconds\n", s)
			os.Exit(2)
		}
		interval = time.Duration(n) * time.Second
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for n := 1; ; n++ {
		fmt.Printf("tick %d\n", n)
		select {
		case <-ctx.Done():
			fmt.Println("worker stopped")
			return
		case <-ticker.C:
		}
	}
}
`,
		"http": `// Command @NAME@ serves HTTP on $PORT; 200 on / and on the health path.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const healthPath = "@HEALTH@"

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "@PORT@"
	}
	ok := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.EscapedPath() != healthPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	}
	srv := &http.Server{Addr: ":" + port, Handler: http.HandlerFunc(ok), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("listening on %s", port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
`,
	},
	"node": {
		"minimal": `// @NAME@: prints a greeting and exits; the VM powers off when the entry returns.
console.log("Hello from @NAME@!");
`,
		"worker": `// @NAME@: a worker that prints a tick every WORKER_INTERVAL_S seconds until SIGTERM.
"use strict";

const interval = Number(process.env.WORKER_INTERVAL_S || "@INTERVAL@") * 1000;
let n = 0;
function tick() {
  n += 1;
  console.log(` + "`tick ${n}`" + `);
}
tick();
const timer = setInterval(tick, interval);
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    clearInterval(timer);
    console.log("worker stopped");
  });
}
`,
		"http": `// @NAME@: serves HTTP on $PORT; 200 on / and on the health path.
"use strict";

const http = require("http");

const port = Number(process.env.PORT || "@PORT@");
const healthPath = "@HEALTH@";

const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (path !== "/" && path !== healthPath) {
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("not found\n");
    return;
  }
  res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
  res.end("ok\n");
});

server.listen(port, "0.0.0.0", () => console.log(` + "`listening on ${port}`" + `));
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close());
}
`,
	},
}

// postgresScript initialises the data directory on the persistent volume on first boot and
// runs PostgreSQL 15 on all addresses. Without POSTGRES_PASSWORD it trusts every client (a local
// development default); with it, clients must give that password (scram-sha-256).
const postgresScript = `#!/bin/sh
# @NAME@: PostgreSQL 15 with its data on the persistent volume (/data).
# Authentication: with POSTGRES_PASSWORD set at run time ('ukernel run -e POSTGRES_PASSWORD=...'),
# the postgres user needs that password; without it every client is trusted, a local
# development default only.
set -eu
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/data/pgdata}
PGPORT=${PGPORT:-5432}

# sql_literal quotes $1 as an SQL string literal (single quotes doubled).
sql_literal() {
	s=$1 out=
	while :; do
		case $s in
		*\'*)
			out="$out${s%%\'*}''"
			s=${s#*\'}
			;;
		*)
			out="$out$s"
			break
			;;
		esac
	done
	printf "'%s'" "$out"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	echo "initialising $PGDATA"
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA"
	"$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --no-instructions
fi

if [ -n "${POSTGRES_PASSWORD:-}" ]; then
	method=scram-sha-256
	echo "ALTER ROLE postgres PASSWORD $(sql_literal "$POSTGRES_PASSWORD");" |
		"$PGBIN/postgres" --single -D "$PGDATA" postgres >/dev/null
else
	method=trust
	echo "warning: POSTGRES_PASSWORD is not set: every client is trusted (local development only)" >&2
fi
# Rewritten on every boot so the method follows POSTGRES_PASSWORD.
cat >"$PGDATA/pg_hba.conf" <<EOF
local all all $method
host all all 0.0.0.0/0 $method
host all all ::/0 $method
EOF

exec "$PGBIN/postgres" -D "$PGDATA" -p "$PGPORT" -c listen_addresses='*' -c unix_socket_directories=/tmp
`
