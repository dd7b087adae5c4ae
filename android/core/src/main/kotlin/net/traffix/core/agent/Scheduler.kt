package net.traffix.core.agent

import java.util.concurrent.Executors
import java.util.concurrent.RejectedExecutionException
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.TimeUnit

/**
 * The agent's one thread: every state change runs on it, in order, so the state machine needs
 * no locks. Injected so tests run it by hand with a fake clock (ManualScheduler in the tests).
 */
interface Scheduler {
    /** Runs [task] on the agent's thread soon, after what is already queued. */
    fun execute(task: Runnable)

    /** Runs [task] on the agent's thread after [delayMillis]; the handle cancels it. */
    fun schedule(delayMillis: Long, task: Runnable): Cancellable

    /** Stops running tasks; queued ones are dropped. */
    fun shutdown()
}

fun interface Cancellable {
    fun cancel()
}

/** A [Scheduler] on one daemon thread. */
class ThreadScheduler(name: String = "traffix-agent") : Scheduler {
    private val exec: ScheduledExecutorService =
        Executors.newSingleThreadScheduledExecutor { r -> Thread(r, name).apply { isDaemon = true } }

    /** After [shutdown] tasks are dropped: late transport events for a closed agent mean nothing. */
    override fun execute(task: Runnable) {
        try {
            exec.execute(task)
        } catch (_: RejectedExecutionException) {
        }
    }

    override fun schedule(delayMillis: Long, task: Runnable): Cancellable =
        try {
            val f: ScheduledFuture<*> = exec.schedule(task, maxOf(delayMillis, 0), TimeUnit.MILLISECONDS)
            Cancellable { f.cancel(false) }
        } catch (_: RejectedExecutionException) {
            Cancellable {}
        }

    override fun shutdown() {
        exec.shutdownNow()
    }
}
