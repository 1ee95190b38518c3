#include "swtpm-lab.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

bool lab_have(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	char buf[4096];
	for (const char *p = path; *p;) {
		const char *end = strchrnul(p, ':');
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)(end - p), p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static int spawn(char *const argv[], const char *log, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (log) {
		posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	int r = posix_spawnp(ret_pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

int lab_run(char *const argv[], const char *log)
{
	pid_t pid;
	if (spawn(argv, log, &pid) < 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

int lab_ca(const char *root, const char *name, char ret_dir[LAB_PATH])
{
	char dir[LAB_PATH], path[2 * LAB_PATH], text[8 * LAB_PATH];
	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s.localca.conf", root, name);
	snprintf(text, sizeof(text),
	         "statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\n"
	         "certserial = %s/certserial\n",
	         dir, dir, dir, dir);
	int r = write_file(path, text);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s.localca.options", root, name);
	r = write_file(path, "--platform-manufacturer ETTM\n--platform-version 2.1\n"
	                     "--platform-model lab\n");
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s.setup.conf", root, name);
	snprintf(text, sizeof(text),
	         "create_certs_tool = swtpm_localca\n"
	         "create_certs_tool_config = %s/%s.localca.conf\n"
	         "create_certs_tool_options = %s/%s.localca.options\n"
	         "active_pcr_banks = sha256\n",
	         root, name, root, name);
	r = write_file(path, text);
	if (r < 0)
		return r;
	snprintf(ret_dir, LAB_PATH, "%s", dir);
	return 0;
}

int lab_tpm_provision(const char *root, const char *name, const char *ca, struct swtpm *ret)
{
	struct swtpm t = {0};
	char conf[2 * LAB_PATH], log[2 * LAB_PATH];
	snprintf(t.state, sizeof(t.state), "%s/%s", root, name);
	snprintf(t.sock, sizeof(t.sock), "%s/%s.sock", root, name);
	snprintf(t.tcti, sizeof(t.tcti), "swtpm:path=%s", t.sock);
	snprintf(conf, sizeof(conf), "%s/%s.setup.conf", root, ca);
	snprintf(log, sizeof(log), "%s/%s.setup.log", root, name);
	if (mkdir(t.state, 0700) < 0)
		return -errno;
	char *argv[] = {"swtpm_setup",      "--tpm2",
	                "--tpmstate",       t.state,
	                "--create-ek-cert", "--create-platform-cert",
	                "--config",         conf,
	                "--overwrite",      NULL};
	if (lab_run(argv, log) != 0) {
		fprintf(stderr, "swtpm_setup for %s failed: see %s\n", name, log);
		return -EIO;
	}
	*ret = t;
	return 0;
}

static bool sock_accepts(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int lab_tpm_start(struct swtpm *t)
{
	char state[LAB_PATH + 8], server[LAB_PATH + 32], ctrl[LAB_PATH + 40], log[LAB_PATH + 8];
	snprintf(state, sizeof(state), "dir=%s", t->state);
	snprintf(server, sizeof(server), "type=unixio,path=%s", t->sock);
	snprintf(ctrl, sizeof(ctrl), "type=unixio,path=%s.ctrl", t->sock);
	snprintf(log, sizeof(log), "%s.log", t->state);
	unlink(t->sock);
	char *argv[] = {"swtpm",
	                "socket",
	                "--tpm2",
	                "--tpmstate",
	                state,
	                "--server",
	                server,
	                "--ctrl",
	                ctrl,
	                "--flags",
	                "not-need-init,startup-clear",
	                NULL};
	/* fork rather than posix_spawn: the child asks to be terminated when
	 * this process dies, so a crashed test leaves no swtpm behind. */
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		return -errno;
	pid_t parent = getpid();
	t->pid = fork();
	if (t->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(logfd);
	if (t->pid < 0) {
		t->pid = 0;
		return -errno;
	}
	for (int i = 0; i < 400; i++) {
		if (sock_accepts(t->sock))
			return 0;
		int status;
		if (waitpid(t->pid, &status, WNOHANG) == t->pid) {
			t->pid = 0;
			fprintf(stderr, "swtpm exited: see %s\n", log);
			return -EIO;
		}
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	lab_tpm_stop(t);
	return -ETIMEDOUT;
}

void lab_tpm_stop(struct swtpm *t)
{
	if (t->pid <= 0)
		return;
	kill(t->pid, SIGTERM);
	while (waitpid(t->pid, NULL, 0) < 0 && errno == EINTR)
		;
	t->pid = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

void lab_rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
