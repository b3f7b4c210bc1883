// Package initcmd implements `ukernel init`: a new project from a preset or a prompt.
package initcmd

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/scaffold"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `ukernel init`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	// Getenv reads the LLM planner settings; os.Getenv outside tests.
	Getenv func(string) string

	Name     string
	Lang     string // as given, or the language the prompt names
	Template string
	Prompt   string
	// PromptGiven: --prompt was on the command line (an empty one is refused).
	PromptGiven bool
	Force       bool
}

// NewCmdInit returns the init command. Its flags are checked before runF (tests: it gets the
// parsed options) or initRun.
func NewCmdInit(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, ProjectDir: f.ProjectDir, Getenv: os.Getenv}
	cmd := &cobra.Command{
		Use:   "init --name NAME [--lang LANG] [--template PRESET | --prompt TEXT] [--force]",
		Short: "Create a new project: ukernel.toml, src/, env/ukernel.env",
		Long: `Create a new project in the project directory (-C DIR, default the current one).

Presets (--template): minimal (prints a greeting and exits), worker (prints a tick every
interval until SIGTERM), http (serves / and a health path on PORT), python (a small Python web
app, standard library only), flask (a Flask app served by waitress, both from PyPI, locked by
hash), postgres (PostgreSQL 15 on 5432 with data on a persistent volume; with --lang python,
go or node, an HTTP app in that language with PostgreSQL as its db service).
Languages (--lang): python (default; shell for postgres), go, shell, node. A prompt that names
a language (e.g. "a go http server") picks it; one ukernel does not build is refused.

--prompt TEXT plans the project from a description: a keyword planner by default, or an LLM
through an OpenAI-compatible Responses API when configured:
  UKERNEL_LLM_PROVIDER  auto (default), openai, local or heuristic
  OPENAI_API_KEY        selects openai under auto
  UKERNEL_LLM_BASE_URL  endpoint base (selects local under auto when no key is set)
  UKERNEL_LLM_MODEL     model name
  UKERNEL_LLM_TIMEOUT   how long to wait for the answer (default 60s)
The plan is validated (features, port, health path, entrypoint inside src/) before anything is
written and recorded in ukernel-prompt.json.

Nothing is written when any check fails; existing files are kept unless --force is given.`,
		Example: `  ukernel init --name example-worker --lang python --template worker
  ukernel -C hello init --name hello --lang go --template http
  ukernel init --name api --prompt "python API with a postgres database"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.Usagef("init takes no arguments, got %q; the name is given with --name", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			opts.PromptGiven = cmd.Flags().Changed("prompt")
			if err := opts.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return initRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "project name (a host name: lowercase letters, digits, '-')")
	cmd.Flags().StringVar(&opts.Lang, "lang", "", "language: "+strings.Join(project.Languages(), ", ")+" (default python, or the one --prompt names; postgres alone uses shell)")
	cmd.Flags().StringVar(&opts.Template, "template", "", "preset: "+strings.Join(scaffold.Presets, ", ")+" (default minimal, or planned from --prompt)")
	cmd.Flags().StringVar(&opts.Prompt, "prompt", "", "describe the project; a planner chooses the preset and its settings")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "overwrite existing files")
	return cmd
}

// NewOptions returns init's options on the factory's streams; `template init` fills and runs
// them with Check and Run.
func NewOptions(f *cmdutil.Factory) *Options {
	return &Options{IO: f.IO, ProjectDir: f.ProjectDir, Getenv: os.Getenv}
}

// Check refuses bad flags as init does before it runs.
func (opts *Options) Check() error { return opts.check() }

// Run writes the project as `ukernel init` does, into opts.ProjectDir().
func Run(ctx context.Context, opts *Options) error { return initRun(ctx, opts) }

// result is the --json output.
type result struct {
	Files  []string      `json:"files"`
	Preset string        `json:"preset"`
	Lang   string        `json:"lang"`
	Plan   scaffold.Plan `json:"plan"`
	Notes  []string      `json:"notes"`
}

// check refuses bad flags (usage errors) before they reach the planner or the disk, and takes
// the language from the prompt when --lang is not given.
func (opts *Options) check() error {
	if opts.Name == "" {
		return cmdutil.Usagef("--name is required (e.g. --name example-worker)")
	}
	if err := project.ValidateName(opts.Name); err != nil {
		return &cmdutil.UsageError{Err: err}
	}
	if opts.Prompt != "" && opts.Lang == "" {
		// The planners choose a preset, not a language: a language the prompt names is the
		// project's, and one ukernel does not build is refused rather than made Python.
		lang, other := scaffold.PromptLang(opts.Prompt)
		if lang == "" && other != "" {
			return cmdutil.Usagef("the prompt asks for %s, which ukernel does not build: it makes %s projects; name one of those in the prompt or pass --lang", other, strings.Join(project.Languages(), ", "))
		}
		if lang != "" {
			opts.IO.Progress().Printf("Language: %s (named in the prompt)", lang)
			opts.Lang = lang
		}
	}
	if opts.Template != "" && !scaffold.IsPreset(opts.Template) {
		return cmdutil.Usagef("unknown preset %q; expected one of %s", opts.Template, strings.Join(scaffold.Presets, ", "))
	}
	if _, err := scaffold.ResolveLang("minimal", opts.Lang); err != nil {
		return &cmdutil.UsageError{Err: err}
	}
	if opts.Template != "" {
		if _, err := scaffold.ResolveLang(opts.Template, opts.Lang); err != nil {
			return &cmdutil.UsageError{Err: err}
		}
	}
	if opts.PromptGiven && strings.TrimSpace(opts.Prompt) == "" {
		return cmdutil.Usagef("--prompt is empty; describe the project or leave --prompt out")
	}
	return nil
}

func initRun(ctx context.Context, opts *Options) error {
	dir, err := opts.ProjectDir()
	if err != nil {
		return err
	}

	var plan scaffold.Plan
	var record *scaffold.PromptRecord
	if opts.Prompt == "" {
		preset := opts.Template
		if preset == "" {
			preset = "minimal"
		}
		plan = scaffold.DefaultPlan(preset)
	} else {
		plan, record, err = planPrompt(ctx, opts)
		if err != nil {
			return err
		}
	}
	lang, err := scaffold.ResolveLang(plan.Preset, opts.Lang)
	if err != nil {
		return fmt.Errorf("planned preset %s: %w", plan.Preset, err)
	}
	if err := plan.Validate(lang); err != nil {
		return fmt.Errorf("invalid plan, nothing written: %w", err)
	}
	s, err := scaffold.Render(scaffold.Options{Name: opts.Name, Lang: lang, Plan: plan, Prompt: record})
	if err != nil {
		return err
	}
	var created []string
	err = s.Write(dir, opts.Force, func(p string) {
		created = append(created, p)
		if !opts.JSON {
			fmt.Fprintf(opts.IO.Out, "Created %s\n", p)
		}
	})
	if err != nil {
		return err
	}
	for _, n := range s.Notes {
		fmt.Fprintf(opts.IO.ErrOut, "note: %s\n", n)
	}
	if opts.JSON {
		notes := s.Notes
		if notes == nil {
			notes = []string{}
		}
		return cmdutil.PrintJSON(opts.IO, result{Files: created, Preset: plan.Preset, Lang: lang, Plan: plan, Notes: notes})
	}
	return nil
}

// planPrompt turns the prompt into a plan with the configured planner.
func planPrompt(ctx context.Context, opts *Options) (scaffold.Plan, *scaffold.PromptRecord, error) {
	cfg, err := scaffold.LLMConfigFromEnv(opts.Getenv)
	if err != nil {
		return scaffold.Plan{}, nil, err
	}
	if cfg == nil {
		plan := scaffold.KeywordPlan(opts.Prompt, opts.Template)
		return plan, &scaffold.PromptRecord{
			Prompt: opts.Prompt, Mode: "heuristic",
			Summary: "No LLM provider configured; used the built-in keyword planner.",
		}, nil
	}
	opts.IO.Progress().Printf("Planning with %s model %s...", cfg.Provider, cfg.Model)
	answer, err := cfg.Ask(ctx, opts.Name, opts.Template, opts.Lang, opts.Prompt)
	if err != nil {
		return scaffold.Plan{}, nil, fmt.Errorf("%w; nothing written", err)
	}
	plan, err := answer.ToPlan(opts.Template)
	if err != nil {
		return scaffold.Plan{}, nil, fmt.Errorf("the %s planner's answer is invalid, nothing written: %w", cfg.Provider, err)
	}
	return plan, &scaffold.PromptRecord{
		Prompt: opts.Prompt, Mode: "llm", Provider: cfg.Provider, Model: cfg.Model,
		Summary: answer.Summary, Notes: answer.Notes,
	}, nil
}
