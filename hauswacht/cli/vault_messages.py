"""English and German text of `hauswacht vault`: help, output and error messages.

Error messages come from the vault's exceptions: the English text is each
exception's `template`, the German text is in GERMAN_ERRORS under its `code`,
and `CATALOG["error_<code>"]` contains both.
"""

from __future__ import annotations

from hauswacht.vault import errors

TEXTS: dict[str, dict[str, str]] = {
    # Help
    "help_vault": {
        "en": "Store secrets encrypted in vault.db and read them from apps and commands.",
        "de": "Geheimnisse verschlüsselt in vault.db speichern und in Apps und Befehlen lesen.",
    },
    "help_opt_vault": {
        "en": "vault file (default: $HAUSWACHT_VAULT or ./hauswacht-data/vault.db)",
        "de": "Tresordatei (Vorgabe: $HAUSWACHT_VAULT oder ./hauswacht-data/vault.db)",
    },
    "help_opt_key_file": {
        "en": "master key file (default: $HAUSWACHT_MASTER_KEY_FILE or "
        "./hauswacht-data/master.key); $HAUSWACHT_MASTER_KEY wins unless this is given",
        "de": "Datei des Hauptschlüssels (Vorgabe: $HAUSWACHT_MASTER_KEY_FILE oder "
        "./hauswacht-data/master.key); $HAUSWACHT_MASTER_KEY geht vor, außer diese Option "
        "ist gesetzt",
    },
    "help_opt_actor": {
        "en": "name recorded in the audit log (default: the OS user)",
        "de": "Name für das Prüfprotokoll (Vorgabe: der Benutzer des Systems)",
    },
    "help_init": {
        "en": "create the vault and, unless one exists, a master key file (mode 0600)",
        "de": "den Tresor und, falls keine existiert, eine Schlüsseldatei (Modus 0600) anlegen",
    },
    "help_max_versions": {
        "en": "versions kept per secret (default: 10)",
        "de": "pro Geheimnis aufbewahrte Versionen (Vorgabe: 10)",
    },
    "help_set": {
        "en": "store a new version of a secret; the value is read from a hidden prompt or "
        "from stdin, never from the command line",
        "de": "eine neue Version eines Geheimnisses speichern; der Wert kommt aus einer "
        "verdeckten Eingabe oder von stdin, nie aus der Befehlszeile",
    },
    "help_name": {
        "en": "secret name (letters, digits, underscores, as an environment variable)",
        "de": "Name des Geheimnisses (Buchstaben, Ziffern, Unterstriche, wie eine "
        "Umgebungsvariable)",
    },
    "help_cas": {
        "en": "store only if the current version is N (0: only if the secret does not exist)",
        "de": "nur speichern, wenn die aktuelle Version N ist (0: nur, wenn das Geheimnis "
        "noch nicht existiert)",
    },
    "help_get": {
        "en": "print the value of a secret",
        "de": "den Wert eines Geheimnisses ausgeben",
    },
    "help_version": {
        "en": "version number (default: the current version)",
        "de": "Versionsnummer (Vorgabe: die aktuelle Version)",
    },
    "help_no_newline": {
        "en": "print the value without a trailing newline",
        "de": "den Wert ohne abschließenden Zeilenumbruch ausgeben",
    },
    "help_list": {
        "en": "list the secrets (names and versions, no values)",
        "de": "die Geheimnisse auflisten (Namen und Versionen, keine Werte)",
    },
    "help_versions": {
        "en": "list the versions kept of a secret",
        "de": "die aufbewahrten Versionen eines Geheimnisses auflisten",
    },
    "help_delete": {
        "en": "mark a version as deleted (undelete restores it)",
        "de": "eine Version als gelöscht markieren (undelete stellt sie wieder her)",
    },
    "help_undelete": {
        "en": "restore a deleted version",
        "de": "eine gelöschte Version wiederherstellen",
    },
    "help_destroy": {
        "en": "erase a version for good, or without --version the whole secret",
        "de": "eine Version endgültig vernichten, ohne --version das ganze Geheimnis",
    },
    "help_destroy_version": {
        "en": "the version to destroy (default: all versions and the secret itself)",
        "de": "die zu vernichtende Version (Vorgabe: alle Versionen und das Geheimnis selbst)",
    },
    "help_rotate": {
        "en": "replace the master key and re-wrap every data key in one transaction",
        "de": "den Hauptschlüssel ersetzen und alle Datenschlüssel in einer Transaktion neu "
        "verschlüsseln",
    },
    "help_audit": {
        "en": "show the audit log, or check its hash chain with --verify",
        "de": "das Prüfprotokoll zeigen oder mit --verify seine Hash-Kette prüfen",
    },
    "help_audit_secret": {
        "en": "only rows of this secret",
        "de": "nur Zeilen dieses Geheimnisses",
    },
    "help_audit_limit": {
        "en": "number of newest rows shown (default: 50)",
        "de": "Anzahl der neuesten gezeigten Zeilen (Vorgabe: 50)",
    },
    "help_audit_verify": {
        "en": "recompute the hash chain and report edited or deleted rows (exit status 1)",
        "de": "die Hash-Kette neu berechnen und geänderte oder gelöschte Zeilen melden "
        "(Exit-Status 1)",
    },
    "help_import_env": {
        "en": "store the values of a KEY=VALUE file such as config.env",
        "de": "die Werte einer KEY=VALUE-Datei wie config.env speichern",
    },
    "help_env_file": {"en": "the file to read", "de": "die zu lesende Datei"},
    "help_env_keys": {
        "en": "keys to import (default: all)",
        "de": "zu übernehmende Schlüssel (Vorgabe: alle)",
    },
    "help_rewrite": {
        "en": "write the file back without the imported values; the original is kept as a "
        "mode 0600 backup next to it",
        "de": "die Datei ohne die übernommenen Werte zurückschreiben; das Original bleibt als "
        "Sicherung mit Modus 0600 daneben",
    },
    "help_export_key": {
        "en": "write the master key to FILE, encrypted with a passphrase (scrypt)",
        "de": "den Hauptschlüssel mit einer Passphrase verschlüsselt (scrypt) in FILE schreiben",
    },
    "help_import_key": {
        "en": "restore the master key file from an export-key FILE",
        "de": "die Schlüsseldatei aus einer mit export-key geschriebenen FILE wiederherstellen",
    },
    "help_key_export_file": {
        "en": "the export file",
        "de": "die Exportdatei",
    },
    "help_passphrase_stdin": {
        "en": "read the passphrase from the first line of stdin instead of a hidden prompt",
        "de": "die Passphrase aus der ersten Zeile von stdin lesen statt verdeckt abzufragen",
    },
    "help_run": {
        "en": "run a command with secrets as environment variables: run [--only NAME] -- "
        "COMMAND ...",
        "de": "einen Befehl mit Geheimnissen als Umgebungsvariablen starten: run [--only NAME] "
        "-- BEFEHL ...",
    },
    "help_only": {
        "en": "pass only this secret (repeatable; default: every active secret)",
        "de": "nur dieses Geheimnis übergeben (wiederholbar; Vorgabe: alle aktiven)",
    },
    "help_command": {"en": "the command and its arguments", "de": "der Befehl und seine Argumente"},
    # Prompts
    "prompt_value": {"en": "Value for {name}: ", "de": "Wert für {name}: "},
    "prompt_value_again": {"en": "Repeat the value: ", "de": "Wert wiederholen: "},
    "prompt_passphrase": {"en": "Passphrase: ", "de": "Passphrase: "},
    "prompt_passphrase_again": {"en": "Repeat the passphrase: ", "de": "Passphrase wiederholen: "},
    # Output
    "error_prefix": {
        "en": "hauswacht vault: error: {message}",
        "de": "hauswacht vault: Fehler: {message}",
    },
    "warning_prefix": {
        "en": "hauswacht vault: warning: {message}",
        "de": "hauswacht vault: Warnung: {message}",
    },
    "init_done": {
        "en": "created vault {path} (master key id {key_id})",
        "de": "Tresor {path} angelegt (Schlüssel-ID {key_id})",
    },
    "init_key_created": {
        "en": "created key file {path} (mode 0600); back it up with "
        "`hauswacht vault export-key FILE`",
        "de": "Schlüsseldatei {path} angelegt (Modus 0600); sichern Sie sie mit "
        "`hauswacht vault export-key FILE`",
    },
    "init_key_existing": {
        "en": "using the existing master key from {source}",
        "de": "verwende den vorhandenen Hauptschlüssel aus {source}",
    },
    "git_warning": {
        "en": "the key file {path} is inside the git work tree {root} and not ignored: "
        "add it to .gitignore",
        "de": "die Schlüsseldatei {path} liegt im Git-Arbeitsverzeichnis {root} und wird nicht "
        "ignoriert: tragen Sie sie in .gitignore ein",
    },
    "set_done": {
        "en": "stored {name} version {version}",
        "de": "{name} Version {version} gespeichert",
    },
    "values_differ": {
        "en": "the two entries differ; nothing was stored",
        "de": "die beiden Eingaben unterscheiden sich; nichts wurde gespeichert",
    },
    "passphrases_differ": {
        "en": "the two passphrases differ; nothing was written",
        "de": "die beiden Passphrasen unterscheiden sich; nichts wurde geschrieben",
    },
    "input_ended": {
        "en": "the input ended before a value was entered; nothing was changed",
        "de": "die Eingabe endete, bevor ein Wert eingegeben wurde; nichts wurde geändert",
    },
    "stdin_closed": {
        "en": "stdin is closed, so no value or passphrase can be read; nothing was changed",
        "de": "stdin ist geschlossen, daher lässt sich kein Wert und keine Passphrase lesen; "
        "nichts wurde geändert",
    },
    "stdin_too_large": {
        "en": "the value for secret {name} on stdin is longer than the limit of {limit} bytes; "
        "nothing was stored",
        "de": "der Wert für das Geheimnis {name} auf stdin ist länger als die Grenze von "
        "{limit} Bytes; nichts wurde gespeichert",
    },
    "stdout_closed": {
        "en": "stdout is closed, so the output would be lost; nothing was done",
        "de": "stdout ist geschlossen, die Ausgabe ginge verloren; nichts wurde ausgeführt",
    },
    "stdin_not_utf8": {
        "en": "the value on stdin is not UTF-8 text; nothing was stored",
        "de": "der Wert auf stdin ist kein UTF-8-Text; nichts wurde gespeichert",
    },
    "no_terminal": {
        "en": "no terminal for the passphrase prompt: pass --passphrase-stdin and write the "
        "passphrase to stdin",
        "de": "kein Terminal für die Passphrase-Abfrage: --passphrase-stdin angeben und die "
        "Passphrase auf stdin schreiben",
    },
    "list_empty": {
        "en": "the vault contains no secrets",
        "de": "der Tresor enthält keine Geheimnisse",
    },
    "col_name": {"en": "NAME", "de": "NAME"},
    "col_version": {"en": "VERSION", "de": "VERSION"},
    "col_state": {"en": "STATE", "de": "ZUSTAND"},
    "col_updated": {"en": "UPDATED (UTC)", "de": "GEÄNDERT (UTC)"},
    "col_created": {"en": "CREATED (UTC)", "de": "ANGELEGT (UTC)"},
    "col_versions_kept": {"en": "KEPT", "de": "AUFBEWAHRT"},
    "col_key_id": {"en": "KEY ID", "de": "SCHLÜSSEL-ID"},
    "col_time": {"en": "TIME (UTC)", "de": "ZEIT (UTC)"},
    "col_actor": {"en": "ACTOR", "de": "AKTEUR"},
    "col_action": {"en": "ACTION", "de": "AKTION"},
    "col_secret": {"en": "SECRET", "de": "GEHEIMNIS"},
    "col_outcome": {"en": "OUTCOME", "de": "ERGEBNIS"},
    "col_pid": {"en": "PID", "de": "PID"},
    "col_host": {"en": "HOST", "de": "HOST"},
    "state_active": {"en": "active", "de": "aktiv"},
    "state_deleted": {"en": "deleted", "de": "gelöscht"},
    "state_destroyed": {"en": "destroyed", "de": "vernichtet"},
    "delete_done": {
        "en": "deleted version {version} of {name}; "
        "`hauswacht vault undelete {name} --version {version}` restores it",
        "de": "Version {version} von {name} gelöscht; "
        "`hauswacht vault undelete {name} --version {version}` stellt sie wieder her",
    },
    "undelete_done": {
        "en": "restored version {version} of {name}",
        "de": "Version {version} von {name} wiederhergestellt",
    },
    "destroy_version_done": {
        "en": "destroyed version {version} of {name}",
        "de": "Version {version} von {name} vernichtet",
    },
    "destroy_all_done": {
        "en": "destroyed secret {name} with all its versions",
        "de": "Geheimnis {name} mit allen Versionen vernichtet",
    },
    "rotate_done": {
        "en": "re-wrapped {count} data keys with the new master key {new_id} (was {old_ids}); "
        "{key_file} now contains only the new key",
        "de": "{count} Datenschlüssel mit dem neuen Hauptschlüssel {new_id} neu verschlüsselt "
        "(vorher {old_ids}); {key_file} enthält jetzt nur den neuen Schlüssel",
    },
    "rotate_export_hint": {
        "en": "earlier key exports no longer open this vault: run "
        "`hauswacht vault export-key FILE` again",
        "de": "frühere Schlüsselexporte öffnen diesen Tresor nicht mehr: führen Sie "
        "`hauswacht vault export-key FILE` erneut aus",
    },
    "audit_empty": {"en": "the audit log is empty", "de": "das Prüfprotokoll ist leer"},
    "audit_intact": {
        "en": "audit log intact: {rows} rows, head hash {head}",
        "de": "Prüfprotokoll unversehrt: {rows} Zeilen, letzter Hash {head}",
    },
    "audit_broken_one": {
        "en": "the audit log failed verification at 1 place",
        "de": "das Prüfprotokoll hat die Prüfung an 1 Stelle nicht bestanden",
    },
    "audit_broken": {
        "en": "the audit log failed verification at {count} places",
        "de": "das Prüfprotokoll hat die Prüfung an {count} Stellen nicht bestanden",
    },
    "problem_edited": {
        "en": "row {row} was edited: its hash no longer matches its fields",
        "de": "Zeile {row} wurde geändert: ihr Hash passt nicht mehr zu ihren Feldern",
    },
    "problem_relinked": {
        "en": "row {row} was replaced: the row after it links to a different hash",
        "de": "Zeile {row} wurde ersetzt: die Zeile danach verweist auf einen anderen Hash",
    },
    "problem_missing": {
        "en": "rows {row} to {last_row} were deleted",
        "de": "die Zeilen {row} bis {last_row} wurden gelöscht",
    },
    "problem_missing_one": {
        "en": "row {row} was deleted",
        "de": "Zeile {row} wurde gelöscht",
    },
    "problem_truncated": {
        "en": "rows {row} to {last_row} at the end were deleted",
        "de": "die Zeilen {row} bis {last_row} am Ende wurden gelöscht",
    },
    "problem_truncated_one": {
        "en": "row {row} at the end was deleted",
        "de": "Zeile {row} am Ende wurde gelöscht",
    },
    "problem_init_missing": {
        "en": "row 1 is not the init row that every vault's audit log starts with: rows "
        "were deleted or replaced",
        "de": "Zeile 1 ist nicht die init-Zeile, mit der das Prüfprotokoll jedes Tresors "
        "beginnt: Zeilen wurden gelöscht oder ersetzt",
    },
    "problem_rolled_back": {
        "en": "secret {secret}: row {row} records writing version {recorded}, but the "
        "newest stored version is {current}: versions were removed",
        "de": "Geheimnis {secret}: Zeile {row} verzeichnet das Schreiben von Version "
        "{recorded}, die neueste gespeicherte Version ist aber {current}: Versionen wurden "
        "entfernt",
    },
    "problem_removed": {
        "en": "secret {secret}: row {row} records writing version {recorded}, but the secret "
        "is missing and was never destroyed",
        "de": "Geheimnis {secret}: Zeile {row} verzeichnet das Schreiben von Version "
        "{recorded}, das Geheimnis fehlt aber und wurde nie vernichtet",
    },
    "import_created": {
        "en": "created {key} (version {version})",
        "de": "{key} angelegt (Version {version})",
    },
    "import_updated": {
        "en": "updated {key} (version {version})",
        "de": "{key} aktualisiert (Version {version})",
    },
    "import_unchanged": {
        "en": "unchanged {key} (version {version})",
        "de": "{key} unverändert (Version {version})",
    },
    "import_skipped_empty": {
        "en": "skipped {key}: the value is empty",
        "de": "{key} übersprungen: der Wert ist leer",
    },
    "import_summary": {
        "en": "imported {count} of {total} keys from {path}",
        "de": "{count} von {total} Schlüsseln aus {path} übernommen",
    },
    "import_no_keys": {
        "en": "{path} contains no KEY=VALUE lines; nothing was stored",
        "de": "{path} enthält keine KEY=VALUE-Zeilen; nichts wurde gespeichert",
    },
    "rewrite_done": {
        "en": "rewrote {path} without {count} values; the original is in {backup} (mode 0600): "
        "delete it once the vault works for you",
        "de": "{path} ohne {count} Werte neu geschrieben; das Original liegt in {backup} "
        "(Modus 0600): löschen Sie es, sobald der Tresor für Sie funktioniert",
    },
    "backup_git_warning": {
        "en": "the backup {backup} contains the imported values in plain text and is inside "
        "the git work tree {root} without being ignored: add the line `{pattern}` to "
        ".gitignore, or delete the backup once you have checked the vault",
        "de": "die Sicherung {backup} enthält die übernommenen Werte im Klartext und liegt "
        "im Git-Arbeitsverzeichnis {root}, ohne ignoriert zu werden: tragen Sie die Zeile "
        "`{pattern}` in .gitignore ein oder löschen Sie die Sicherung, sobald Sie den "
        "Tresor geprüft haben",
    },
    "export_done": {
        "en": "wrote master key ids {key_ids} to {path}, encrypted with the passphrase "
        "(scrypt N={n}, r={r}, p={p})",
        "de": "Schlüssel-IDs {key_ids} nach {path} geschrieben, mit der Passphrase "
        "verschlüsselt (scrypt N={n}, r={r}, p={p})",
    },
    "import_key_done": {
        "en": "wrote master key ids {key_ids} to {path} (mode 0600)",
        "de": "Schlüssel-IDs {key_ids} nach {path} geschrieben (Modus 0600)",
    },
    "import_key_fits": {
        "en": "the key opens the vault {vault}",
        "de": "der Schlüssel öffnet den Tresor {vault}",
    },
    "import_key_env_wins": {
        "en": "HAUSWACHT_MASTER_KEY is set and takes precedence over {path}: unset it to use "
        "the restored key",
        "de": "HAUSWACHT_MASTER_KEY ist gesetzt und geht {path} vor: entfernen Sie die Variable, "
        "um den wiederhergestellten Schlüssel zu nutzen",
    },
    "run_missing_command": {
        "en": "missing command: use `hauswacht vault run [--only NAME] -- COMMAND ...`",
        "de": "Befehl fehlt: `hauswacht vault run [--only NAME] -- BEFEHL ...` verwenden",
    },
    "run_not_found": {
        "en": "command not found: {command}",
        "de": "Befehl nicht gefunden: {command}",
    },
    "run_value_nul": {
        "en": "secret {name} cannot be passed as an environment variable because its value "
        "contains a NUL byte; store it again without it",
        "de": "das Geheimnis {name} lässt sich nicht als Umgebungsvariable übergeben, weil "
        "sein Wert ein NUL-Byte enthält; speichern Sie ihn ohne dieses neu",
    },
    "run_not_executable": {
        "en": "cannot run {command}: {reason}",
        "de": "{command} kann nicht gestartet werden: {reason}",
    },
    "invalid_integer": {
        "en": "expected a whole number of at least {minimum}, got {value!r}",
        "de": "erwartet wird eine ganze Zahl ab {minimum}, nicht {value!r}",
    },
    "database_failed": {
        "en": "the vault file {path} could not be used: {reason}",
        "de": "die Tresordatei {path} konnte nicht verwendet werden: {reason}",
    },
    "file_failed": {
        "en": "file operation failed on {path}: {reason}",
        "de": "Dateizugriff auf {path} fehlgeschlagen: {reason}",
    },
    "os_failed": {
        "en": "a system call failed: {reason}",
        "de": "ein Systemaufruf ist fehlgeschlagen: {reason}",
    },
}

GERMAN_ERRORS: dict[str, str] = {
    "no_vault": (
        "kein Tresor unter {path}: legen Sie einen mit `hauswacht vault init` an oder setzen "
        "Sie HAUSWACHT_VAULT auf die Tresordatei"
    ),
    "not_a_vault": "{path} ist keine Hauswacht-Tresordatei ({reason})",
    "foreign_database": (
        "{path} ist eine SQLite-Datenbank einer anderen Anwendung (application_id "
        "{application_id}, user_version {user_version}), kein Hauswacht-Tresor; setzen Sie "
        "HAUSWACHT_VAULT oder --vault auf die Tresordatei"
    ),
    "no_schema": (
        "{path} ist eine SQLite-Datei ohne Tresorschema; setzen Sie HAUSWACHT_VAULT oder "
        "--vault auf die Tresordatei, oder verschieben Sie diese Datei und führen Sie "
        "`hauswacht vault init` aus"
    ),
    "vault_locked": (
        "der Tresor {path} blieb {seconds} s lang von einem anderen Prozess gesperrt; nichts "
        "wurde geändert, versuchen Sie es erneut, wenn dieser Prozess fertig ist"
    ),
    "schema_too_new": (
        "{path} hat die Schemaversion {version}, diese Hauswacht-Version kennt nur bis "
        "{supported}: aktualisieren Sie Hauswacht"
    ),
    "vault_exists": "unter {path} existiert bereits ein Tresor; init überschreibt ihn nie",
    "no_master_key": (
        "kein Hauptschlüssel: HAUSWACHT_MASTER_KEY ist nicht gesetzt und die Schlüsseldatei "
        "{path} existiert nicht; führen Sie `hauswacht vault init` oder "
        "`hauswacht vault import-key FILE` aus"
    ),
    "invalid_master_key": (
        "{source} enthält keinen gültigen Hauptschlüssel: erwartet wird ein Fernet-Schlüssel "
        "(44 URL-sichere Base64-Zeichen) pro Zeile, der neueste zuerst"
    ),
    "invalid_master_key_variable": (
        "HAUSWACHT_MASTER_KEY enthält keinen gültigen Hauptschlüssel: erwartet werden "
        "Fernet-Schlüssel (je 44 URL-sichere Base64-Zeichen), durch Kommas getrennt, der "
        "neueste zuerst"
    ),
    "key_file_mode": (
        "die Schlüsseldatei {path} hat den Modus {mode}, andere Benutzer können sie lesen; "
        "führen Sie `chmod 600 {path}` aus und versuchen Sie es erneut"
    ),
    "key_file_owner": (
        "die Schlüsseldatei {path} gehört der UID {owner}, nicht dem aktuellen Benutzer "
        "(UID {uid}); führen Sie `chown {uid} {path}` aus oder nutzen Sie das Konto des "
        "Eigentümers"
    ),
    "key_file_exists": "{path} existiert bereits und wird nie überschrieben; verschieben Sie "
    "die Datei zuerst",
    "wrong_master_key": (
        "falscher Hauptschlüssel: der Tresor braucht die Schlüssel-ID {expected}, aber "
        "{source} enthält die Schlüssel-ID {given}; nichts wurde geändert"
    ),
    "unknown_first_key": (
        "der erste Schlüssel in {source} hat die Schlüssel-ID {given}, die dieser Tresor "
        "nicht verwendet; neue Werte werden mit dem Hauptschlüssel {expected} des Tresors "
        "verschlüsselt, stellen Sie diesen Schlüssel an den Anfang; nichts wurde geändert"
    ),
    "rotation_needs_key_file": (
        "rotate-key schreibt den neuen Hauptschlüssel in die Schlüsseldatei, aber der Schlüssel "
        "kommt aus HAUSWACHT_MASTER_KEY; schreiben Sie ihn nach {path} (Modus 0600), entfernen "
        "Sie die Variable und führen Sie rotate-key erneut aus"
    ),
    "tampered": (
        "Version {version} des Geheimnisses {name} ließ sich nicht entschlüsseln: der "
        "gespeicherte Wert wurde verändert oder beschädigt"
    ),
    "not_found": (
        "das Geheimnis {name} existiert nicht; speichern Sie es mit `hauswacht vault set {name}`"
    ),
    "version_not_found": (
        "das Geheimnis {name} hat keine Version {version}; `hauswacht vault versions {name}` "
        "listet die aufbewahrten Versionen"
    ),
    "deleted": (
        "Version {version} des Geheimnisses {name} ist gelöscht; stellen Sie sie mit "
        "`hauswacht vault undelete {name} --version {version}` wieder her"
    ),
    "destroyed": (
        "Version {version} des Geheimnisses {name} wurde vernichtet und lässt sich nicht "
        "wiederherstellen"
    ),
    "not_deleted": (
        "Version {version} des Geheimnisses {name} ist nicht gelöscht; nichts wurde "
        "wiederhergestellt"
    ),
    "rolled_back": (
        "die neueste gespeicherte Version des Geheimnisses {name} ist {current}, das "
        "Prüfprotokoll verzeichnet aber das Schreiben von Version {recorded}: Versionen "
        "wurden aus der Tresordatei entfernt; stellen Sie sie aus einer Sicherung wieder her"
    ),
    "removed": (
        "das Geheimnis {name} fehlt in der Tresordatei, das Prüfprotokoll verzeichnet aber "
        "das Schreiben von Version {recorded} und keine Vernichtung: stellen Sie die "
        "Tresordatei aus einer Sicherung wieder her"
    ),
    "cas_conflict": (
        "Check-and-set für das Geheimnis {name} fehlgeschlagen: erwartet war Version "
        "{expected}, aktuell ist Version {current}; nichts wurde gespeichert"
    ),
    "invalid_name": (
        "ungültiger Name {name!r}: erlaubt sind Buchstaben, Ziffern und Unterstriche, am "
        "Anfang ein Buchstabe oder Unterstrich, höchstens 128 Zeichen"
    ),
    "empty_value": "der Wert für das Geheimnis {name} ist leer; nichts wurde gespeichert",
    "value_nul": (
        "der Wert für das Geheimnis {name} enthält ein NUL-Byte, das eine Umgebungsvariable "
        "nicht aufnehmen kann; nichts wurde gespeichert"
    ),
    "value_too_large": (
        "der Wert für das Geheimnis {name} hat {size} Bytes, mehr als die Grenze von {limit} "
        "Bytes; nichts wurde gespeichert"
    ),
    "invalid_actor": (
        "ungültiger Akteur {actor!r}: er enthält Steuerzeichen, die die Anzeige des "
        "Prüfprotokolls verfälschen würden; verwenden Sie einen Namen ohne sie"
    ),
    "invalid_cas": "die Check-and-set-Version muss 0 oder größer sein, nicht {value}",
    "invalid_max_versions": (
        "die Zahl der aufbewahrten Versionen muss zwischen 1 und {limit} liegen, nicht {value}"
    ),
    "env_syntax": (
        "{path} Zeile {line}: erwartet wird KEY=VALUE, `export KEY=VALUE`, ein Kommentar oder "
        "eine Leerzeile"
    ),
    "env_quote": "{path} Zeile {line}: das hier beginnende {quote} Anführungszeichen wird nie "
    "geschlossen",
    "read_failed": "{path} kann nicht gelesen werden: {reason}",
    "env_key_missing": "{path} enthält keinen Schlüssel {key}; nichts wurde gespeichert",
    "export_format": "{path} ist kein Hauswacht-Schlüsselexport ({reason})",
    "scrypt_memory": (
        "{path} verlangt scrypt N={n} und r={r}, was {memory_mib} MiB Speicher braucht "
        "(128·N·r), mehr als die Grenze von {limit_mib} MiB; exportieren Sie den Schlüssel "
        "erneut mit den Standardparametern"
    ),
    "scrypt_cost": (
        "{path} verlangt scrypt N={n}, r={r} und p={p}, einen Aufwand N·r·p von {cost}, "
        "mehr als die Grenze von {limit}; exportieren Sie den Schlüssel erneut mit den "
        "Standardparametern"
    ),
    "wrong_passphrase": (
        "falsche Passphrase für {path} oder die Datei wurde verändert; nichts wurde geschrieben"
    ),
    "passphrase_too_short": (
        "die Passphrase hat {length} Zeichen; verwenden Sie mindestens {minimum}"
    ),
    "missing_secret": (
        "das Geheimnis {name} ist im Tresor {path} nicht gesetzt; speichern Sie es mit "
        "`hauswacht vault set {name}`"
    ),
    "write_failed": "{path} kann nicht geschrieben werden: {reason}",
}

# The quote kinds named in env_quote, as German adjectives.
GERMAN_QUOTES = {"single": "einfache", "double": "doppelte"}

# The vault's own `reason` texts (errors.REASONS); OS error texts are not translated.
GERMAN_REASONS = {
    errors.REASON_FILE_NOT_FOUND: "Datei nicht gefunden",
    errors.REASON_IS_DIRECTORY: "ist ein Verzeichnis",
    errors.REASON_NOT_REGULAR_FILE: "keine reguläre Datei",
    errors.REASON_NOT_UTF8: "kein UTF-8-Text",
    errors.REASON_NOT_JSON: "kein JSON",
    errors.REASON_UNKNOWN_FORMAT: "unbekanntes Format oder unbekannte Version",
    errors.REASON_INVALID_FIELDS: "fehlende oder ungültige Felder",
    errors.REASON_UNSUPPORTED_SCRYPT: "nicht unterstützte scrypt-Parameter",
    errors.REASON_NO_VAULT_INFO: "die Tabelle vault_info ist leer",
    errors.REASON_NOT_A_DATABASE: "die Datei ist keine Datenbank",
}


def _error_classes() -> list[type[errors.VaultError]]:
    found = []
    pending = [errors.VaultError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls is not errors.VaultError]


CATALOG: dict[str, dict[str, str]] = dict(TEXTS)
for _cls in _error_classes():
    CATALOG[f"error_{_cls.code}"] = {"en": _cls.template, "de": GERMAN_ERRORS[_cls.code]}
