package net.traffix.node

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.util.Log

/**
 * Starts the node after a reboot (when the owner left "start on boot" on) and after an app
 * update (when it was running). Both broadcasts may start a foreground service from the
 * background, and a specialUse one is not among the types Android 15 bars from BOOT_COMPLETED.
 * BOOT_COMPLETED comes after the first unlock, so the (credential-encrypted) settings are readable.
 */
class BootReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val store = SettingsStore.get(context)
        if (store.pairing.value?.paired != true) return
        try {
            when (intent.action) {
                // After a reboot only when the owner left it running and wants it on boot.
                Intent.ACTION_BOOT_COMPLETED -> if (store.startOnBoot.value && store.ownerWantsRunning) NodeService.startAfterBoot(context)
                Intent.ACTION_MY_PACKAGE_REPLACED -> if (store.ownerWantsRunning) NodeService.startAfterUpdate(context)
            }
        } catch (e: IllegalStateException) {
            // ForegroundServiceStartNotAllowedException: the Home screen tells the owner (core
            // RestartWatchdog: meant to run, not running) and offers Start.
            Log.w(TAG, "cannot start the node from ${intent.action}", e)
        }
    }

    private companion object {
        const val TAG = "TraffixBoot"
    }
}
