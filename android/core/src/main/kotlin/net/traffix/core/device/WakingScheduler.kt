package net.traffix.core.device

import java.util.concurrent.atomic.AtomicBoolean
import net.traffix.core.agent.Cancellable
import net.traffix.core.agent.Scheduler

/**
 * Wakes the phone for the agent's timers. With the screen off and no wake lock held (the node
 * holds none while idle: [KeepAwake]) Android suspends the CPU, and a thread's timer neither
 * fires nor counts the time asleep (`System.nanoTime` stops with the CPU), so an idle node
 * would send its heartbeat only when something else woke the phone. The app's [Waker] sets a
 * wake-up alarm (`AlarmManager.setAndAllowWhileIdle`, `ELAPSED_REALTIME_WAKEUP`) that runs the
 * task under a short wake lock.
 *
 * Delays shorter than [minDelayMillis] stay on [inner] alone (they happen while the phone is
 * awake anyway: a socket's close, a dial); longer ones (heartbeats, back-off, drain deadlines)
 * get both, and whichever comes first runs the task, once, on the agent's thread.
 */
class WakingScheduler(private val inner: Scheduler, private val waker: Waker, private val minDelayMillis: Long = 15_000) : Scheduler {
    /** Sets a wake-up alarm in [delayMillis] that calls [task]; the handle cancels it. */
    fun interface Waker {
        fun wakeIn(delayMillis: Long, task: Runnable): Cancellable
    }

    override fun execute(task: Runnable) = inner.execute(task)

    override fun schedule(delayMillis: Long, task: Runnable): Cancellable {
        if (delayMillis < minDelayMillis) return inner.schedule(delayMillis, task)
        val done = AtomicBoolean(false)
        val once = Runnable { if (done.compareAndSet(false, true)) task.run() }
        val timer = inner.schedule(delayMillis, once)
        val alarm = waker.wakeIn(delayMillis, Runnable { inner.execute(once) })
        return Cancellable {
            done.set(true)
            timer.cancel()
            alarm.cancel()
        }
    }

    override fun shutdown() = inner.shutdown()
}
