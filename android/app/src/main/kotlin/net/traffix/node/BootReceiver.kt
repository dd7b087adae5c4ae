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
        val start =
            when (intent.action) {
                Intent.ACTION_BOOT_COMPLETED -> store.startOnBoot.value
                Intent.ACTION_MY_PACKAGE_REPLACED -> store.ownerWantsRunning
                else -> false
            }
        if (!start) return
        try {
            NodeService.start(context)
        } catch (e: IllegalStateException) {
            // ForegroundServiceStartNotAllowedException: the owner starts it from the app.
            Log.w(TAG, "cannot start the node from ${intent.action}", e)
        }
    }

    private companion object {
        const val TAG = "TraffixBoot"
    }
}
