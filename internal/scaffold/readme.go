package scaffold

import (
	"fmt"
	"strings"
)

// readme is the generated project's README: what it is and how to run it.
func readme(o Options, s *Scaffold) string {
	p := o.Plan
	var b strings.Builder
	kind := p.Preset + " preset"
	if p.Has(FeaturePostgres) && p.Preset != "postgres" {
		// --template postgres with another language is this preset with the database beside it.
		kind += " with PostgreSQL"
	}
	fmt.Fprintf(&b, "# %s\n\nA ukernel project (%s, %s). ", o.Name, kind, o.Lang)
	fmt.Fprintf(&b, "The entry `%s` is the main process: when it exits the VM powers off and `ukernel run` exits with its code.\n\n", s.Config.Project.Entry)
	b.WriteString("## Run\n\n```sh\nukernel env lock   # pin the environment in env/ukernel.lock\nukernel build\nukernel run\n```\n\n")
	switch p.Preset {
	case "minimal":
		fmt.Fprintf(&b, "It prints `Hello from %s!` and exits 0. It has no network (`net = \"none\"` under `[run]` in ukernel.toml, which boots faster); set `net = \"user\"` there, or run with `--net user`, to give it one.\n", o.Name)
	case "worker":
		fmt.Fprintf(&b, "It prints `tick N` every %d s (`WORKER_INTERVAL_S` in `[run] env` of ukernel.toml, or `ukernel run -e WORKER_INTERVAL_S=...`) and stops cleanly on SIGTERM.\n", p.IntervalS)
	case "http", "python", "flask":
		if p.Preset == "flask" {
			b.WriteString("A Flask app served by waitress; Flask and waitress are locked by hash in `env/ukernel.lock` like any `ukernel env add`. ")
		}
		fmt.Fprintf(&b, "It serves HTTP on port %d (`PORT`), published on the host as %d; `/` and the health path `%s` answer 200:\n\n```sh\ncurl http://127.0.0.1:%d%s\n```\n", p.Port, p.Port, p.HealthPath, p.Port, p.HealthPath)
	case "postgres":
		b.WriteString(postgresReadme)
	}
	if p.Has(FeaturePostgres) && p.Preset != "postgres" {
		b.WriteString("\n## Database\n\nThe `db` service runs PostgreSQL 15 from `src/postgres.sh` with its data on the persistent volume; the app finds it through `DATABASE_URL`.\n")
		b.WriteString(postgresAuth)
	}
	if len(s.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range s.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	b.WriteString("\n## Files\n\n- `ukernel.toml`: project, run settings, health checks\n- `env/ukernel.env`: system and Python packages (`ukernel env add`); the base is `[env] base` in `ukernel.toml`\n- `src/`: the workload, installed at `/app` in the guest\n")
	return b.String()
}

const postgresReadme = "It runs PostgreSQL 15 on port 5432 (published on the host as 5432), user and database `postgres`, " +
	"with its data in `/data/pgdata` on the persistent data volume (initialised on first boot).\n\n" +
	"```sh\npsql -h 127.0.0.1 -U postgres\n```\n" + postgresAuth

const postgresAuth = "\n**Authentication.** Without `POSTGRES_PASSWORD` every client is trusted: a local development default, " +
	"never for anything reachable by others. Given at run time (`ukernel run -e POSTGRES_PASSWORD=...`), a password is " +
	"required (scram-sha-256) and set for the `postgres` user on that boot.\n"
