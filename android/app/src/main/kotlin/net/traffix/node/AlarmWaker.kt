package net.traffix.node

import android.app.AlarmManager
import android.app.PendingIntent
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.os.PowerManager
import android.os.SystemClock
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger
import net.traffix.core.agent.Cancellable
import net.traffix.core.device.WakingScheduler
import net.traffix.core.time.Clock

/**
 * The agent's long timers as wake-up alarms (core [WakingScheduler]): `setAndAllowWhileIdle`
 * on the elapsed-time clock, which fires with the screen off and, in Doze, at most about every
 * nine minutes (Android's limit). [WakeReceiver] runs the task under a short wake lock, long
 * enough for the agent's thread to send its heartbeat. No exact-alarm permission is needed.
 */
class AlarmWaker(context: Context) : WakingScheduler.Waker {
    private val app = context.applicationContext
    private val alarms = app.getSystemService(AlarmManager::class.java)

    override fun wakeIn(delayMillis: Long, task: Runnable): Cancellable {
        val id = nextId.incrementAndGet() and Int.MAX_VALUE
        tasks[id] = task
        val pi =
            PendingIntent.getBroadcast(
                app,
                id,
                Intent(app, WakeReceiver::class.java).putExtra(EXTRA_ID, id),
                PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
            )
        alarms.setAndAllowWhileIdle(AlarmManager.ELAPSED_REALTIME_WAKEUP, SystemClock.elapsedRealtime() + delayMillis, pi)
        return Cancellable {
            tasks.remove(id)
            alarms.cancel(pi)
        }
    }

    companion object {
        internal const val EXTRA_ID = "net.traffix.node.extra.TIMER"

        /** Keeps the CPU up after an alarm while the agent's thread does its work. */
        private const val WAKE_MS = 10_000L
        private val nextId = AtomicInteger()
        private val tasks = ConcurrentHashMap<Int, Runnable>()

        internal fun fire(context: Context, id: Int) {
            val task = tasks.remove(id) ?: return // cancelled, or the process was restarted since
            context.getSystemService(PowerManager::class.java)
                .newWakeLock(PowerManager.PARTIAL_WAKE_LOCK, "traffix:timer")
                .acquire(WAKE_MS)
            task.run()
        }

        /**
         * The agent's clock on Android: `elapsedRealtimeNanos` counts the time the CPU slept
         * (`System.nanoTime` does not), so "silent for 60 s" means 60 s of the owner's time.
         */
        val ELAPSED: Clock =
            object : Clock {
                override fun nanoTime(): Long = SystemClock.elapsedRealtimeNanos()

                override fun wallMillis(): Long = System.currentTimeMillis()
            }
    }
}

/** Delivers [AlarmWaker]'s alarms (not exported: only the app's own PendingIntents reach it). */
class WakeReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        AlarmWaker.fire(context, intent.getIntExtra(AlarmWaker.EXTRA_ID, -1))
    }
}
